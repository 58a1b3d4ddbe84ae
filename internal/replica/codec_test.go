package replica

import (
	"bytes"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func sampleBatch() []Envelope {
	return []Envelope{
		{Group: "demo.mesh", Msg: &raftpb.Message{
			Type: raftpb.MessageType_MsgApp.Enum(), To: new(uint64(2)), From: new(uint64(1)), Term: new(uint64(3)),
			Entries: []*raftpb.Entry{{Index: new(uint64(7)), Term: new(uint64(3)), Data: []byte("x")}},
		}},
		{Group: "shop.demo.mesh", Quiesce: true, Msg: &raftpb.Message{
			Type: raftpb.MessageType_MsgHeartbeat.Enum(), To: new(uint64(2)), From: new(uint64(1)), Commit: new(uint64(9)),
		}},
		{Group: "old.demo.mesh", Removed: true, Msg: &raftpb.Message{
			Type: raftpb.MessageType_MsgUnreachable.Enum(), To: new(uint64(2)), From: new(uint64(1)), Index: new(uint64(12)),
		}},
	}
}

func TestBatchRoundTrip(t *testing.T) {
	for _, batch := range [][]Envelope{nil, sampleBatch()} {
		frame, err := EncodeBatch(batch)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeBatch(frame)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if len(got) != len(batch) {
			t.Fatalf("got %d envelopes, want %d", len(got), len(batch))
		}
		for i := range got {
			if got[i].Group != batch[i].Group || got[i].Quiesce != batch[i].Quiesce || got[i].Removed != batch[i].Removed || !proto.Equal(got[i].Msg, batch[i].Msg) {
				t.Errorf("envelope %d: got %+v, want %+v", i, got[i], batch[i])
			}
		}
	}
}

func TestDecodeBatchRejects(t *testing.T) {
	frame, _ := EncodeBatch(sampleBatch())
	for name, b := range map[string][]byte{
		"empty":     nil,
		"version":   append([]byte{9}, frame[1:]...),
		"truncated": frame[:len(frame)-1],
		"trailing":  append(bytes.Clone(frame), 0),
		"count":     {batchVersion, 100, 0, 0, 0},
	} {
		if _, err := DecodeBatch(b); err == nil {
			t.Errorf("%s: decoded a malformed frame", name)
		}
	}
}

func FuzzDecodeBatch(f *testing.F) {
	frame, _ := EncodeBatch(sampleBatch())
	empty, _ := EncodeBatch(nil)
	f.Add(frame)
	f.Add(empty)
	f.Add([]byte{batchVersion, 1, 3, 'a', 'b', 'c', 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		batch, err := DecodeBatch(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes and decodes to the same envelopes.
		again, err := EncodeBatch(batch)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		batch2, err := DecodeBatch(again)
		if err != nil || len(batch2) != len(batch) {
			t.Fatalf("re-decode: %v (%d vs %d)", err, len(batch2), len(batch))
		}
		for i := range batch {
			if batch[i].Group != batch2[i].Group || batch[i].Quiesce != batch2[i].Quiesce || batch[i].Removed != batch2[i].Removed || !proto.Equal(batch[i].Msg, batch2[i].Msg) {
				t.Fatalf("envelope %d changed in a round trip", i)
			}
		}
	})
}

func TestProposalRoundTrip(t *testing.T) {
	b := encodeProposal(7, 1<<60, []byte("payload"))
	node, req, data, err := decodeProposal(b)
	if err != nil || node != 7 || req != 1<<60 || string(data) != "payload" {
		t.Fatalf("decode = %d %d %q %v", node, req, data, err)
	}
	if _, _, _, err := decodeProposal([]byte("payload")); err == nil {
		t.Fatal("decoded caller bytes without an envelope")
	}
}

func FuzzDecodeProposal(f *testing.F) {
	f.Add(encodeProposal(1, 2, []byte("data")))
	f.Add(encodeProposal(1<<63, 1<<63, nil))
	f.Add([]byte{proposalVersion, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		node, req, data, err := decodeProposal(b)
		if err != nil {
			return
		}
		n2, r2, d2, err := decodeProposal(encodeProposal(node, req, data))
		if err != nil || n2 != node || r2 != req || !bytes.Equal(d2, data) {
			t.Fatalf("round trip changed (%d,%d,%q) into (%d,%d,%q): %v", node, req, data, n2, r2, d2, err)
		}
	})
}
