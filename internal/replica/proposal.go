package replica

import (
	"encoding/binary"
	"errors"
)

// Proposal framing. Every normal entry this package proposes wraps the caller's
// bytes so that the replica that proposed it can find its waiter when the entry is
// applied, whichever node was leader:
//
//	byte 0     version (1)
//	uvarint    proposing node ID
//	uvarint    request ID (unique per node and process lifetime; starts at a random value)
//	rest       the caller's data, handed unchanged to StateMachine.Apply
//
// Configuration changes carry the same header (without data) in their Context.

const proposalVersion = 1

var errBadProposal = errors.New("replica: malformed proposal envelope")

func encodeProposal(node, req uint64, data []byte) []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(data))
	b = append(b, proposalVersion)
	b = binary.AppendUvarint(b, node)
	b = binary.AppendUvarint(b, req)
	return append(b, data...)
}

// decodeProposal parses an entry payload produced by encodeProposal. The returned
// data aliases b.
func decodeProposal(b []byte) (node, req uint64, data []byte, err error) {
	if len(b) < 3 || b[0] != proposalVersion {
		return 0, 0, nil, errBadProposal
	}
	b = b[1:]
	node, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, nil, errBadProposal
	}
	b = b[n:]
	req, n = binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, nil, errBadProposal
	}
	return node, req, b[n:], nil
}
