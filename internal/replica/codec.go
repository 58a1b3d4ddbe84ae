package replica

import (
	"encoding/binary"
	"errors"
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Batch wire format (one transport frame):
//
//	byte       version (1)
//	uvarint    number of envelopes
//	per envelope:
//	  uvarint  length of the group ID, then its bytes (at most maxGroupIDLen)
//	  byte     flags (bit 0: quiesce, bit 1: removal notice)
//	  uvarint  length of the marshaled raftpb.Message, then its bytes
//
// An empty batch (count 0) is a node liveness ping.

const (
	batchVersion  = 1
	maxGroupIDLen = 1024
	flagQuiesce   = 1
	flagRemoved   = 2
)

var errBadBatch = errors.New("replica: malformed batch frame")

// EncodeBatch marshals a batch into one frame.
func EncodeBatch(batch []Envelope) ([]byte, error) {
	b := make([]byte, 0, 64*len(batch)+8)
	b = append(b, batchVersion)
	b = binary.AppendUvarint(b, uint64(len(batch)))
	mo := proto.MarshalOptions{}
	for i, env := range batch {
		if len(env.Group) > maxGroupIDLen {
			return nil, fmt.Errorf("replica: encode batch: envelope %d: group id longer than %d", i, maxGroupIDLen)
		}
		b = binary.AppendUvarint(b, uint64(len(env.Group)))
		b = append(b, env.Group...)
		var flags byte
		if env.Quiesce {
			flags |= flagQuiesce
		}
		if env.Removed {
			flags |= flagRemoved
		}
		b = append(b, flags)
		size := mo.Size(env.Msg)
		b = binary.AppendUvarint(b, uint64(size))
		var err error
		b, err = mo.MarshalAppend(b, env.Msg)
		if err != nil {
			return nil, fmt.Errorf("replica: encode batch: envelope %d (group %s): %w", i, env.Group, err)
		}
	}
	return b, nil
}

// DecodeBatch parses a frame produced by EncodeBatch.
func DecodeBatch(b []byte) ([]Envelope, error) {
	if len(b) < 2 || b[0] != batchVersion {
		return nil, errBadBatch
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, errBadBatch
	}
	b = b[k:]
	if n > uint64(len(b))/3 { // every envelope takes at least 3 bytes
		return nil, errBadBatch
	}
	out := make([]Envelope, 0, n)
	for i := uint64(0); i < n; i++ {
		gl, k := binary.Uvarint(b)
		if k <= 0 || gl > maxGroupIDLen || gl > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: envelope %d: group id", errBadBatch, i)
		}
		b = b[k:]
		group := GroupID(b[:gl])
		b = b[gl:]
		if len(b) < 1 {
			return nil, fmt.Errorf("%w: envelope %d: flags", errBadBatch, i)
		}
		flags := b[0]
		b = b[1:]
		ml, k := binary.Uvarint(b)
		if k <= 0 || ml > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: envelope %d: message length", errBadBatch, i)
		}
		b = b[k:]
		m := new(raftpb.Message)
		if err := proto.Unmarshal(b[:ml], m); err != nil {
			return nil, fmt.Errorf("%w: envelope %d: message: %v", errBadBatch, i, err)
		}
		b = b[ml:]
		out = append(out, Envelope{Group: group, Msg: m, Quiesce: flags&flagQuiesce != 0, Removed: flags&flagRemoved != 0})
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errBadBatch, len(b))
	}
	return out, nil
}
