package anchor

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// NodeID is the Raft ID of an anchor: a 64-bit FNV-1a hash of its string ID.
// Collisions are checked when an anchor joins.
func NodeID(anchorID string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(anchorID))
	id := h.Sum64()
	if id == 0 {
		id = 1
	}
	return id
}

// meta is what an anchor knows about itself across restarts (anchor.json).
type meta struct {
	ID         string            `json:"id"`
	Mesh       string            `json:"mesh"`
	Address    string            `json:"address"`
	Anchors    map[string]string `json:"anchors"`           // address book: anchor ID -> host:port
	RootVoters []string          `json:"rootVoters"`        // initial voters of the root scope
	Parents    map[string]string `json:"parents,omitempty"` // hosted scope -> the scope that delegated it
	// Removed are the scopes this anchor was removed from and whose replica
	// it deleted: a stored replica of one is deleted rather than resumed, and
	// a Delegation still naming this anchor does not start one again. Only an
	// explicit start (StartReplica, CreateScope) lifts the mark.
	Removed []string `json:"removed,omitempty"`
}

const metaFile = "anchor.json"

func loadMeta(dir string) (*meta, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, metaFile), err)
	}
	if m.ID == "" || m.Mesh == "" {
		return nil, fmt.Errorf("%s: id and mesh are required", filepath.Join(dir, metaFile))
	}
	return &m, nil
}

// save writes anchor.json atomically (write to a temporary file, fsync, rename).
func (m *meta) save(dir string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, metaFile), b, 0o600)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// book is the live address book: anchor ID <-> node ID <-> address.
type book struct {
	mu    sync.RWMutex
	addrs map[string]string // anchor ID -> address
	ids   map[uint64]string // node ID -> anchor ID
}

func newBook(addrs map[string]string) *book {
	b := &book{addrs: map[string]string{}, ids: map[uint64]string{}}
	for id, a := range addrs {
		b.set(id, a)
	}
	return b
}

func (b *book) set(id, addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.addrs[id] = addr
	b.ids[NodeID(id)] = id
}

// addr returns the address of an anchor by ID.
func (b *book) addr(id string) (string, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	a, ok := b.addrs[id]
	return a, ok
}

// nodeAddr resolves a Raft node ID to an address (the replica transport's resolver).
func (b *book) nodeAddr(node uint64) (string, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	id, ok := b.ids[node]
	if !ok {
		return "", false
	}
	a, ok := b.addrs[id]
	return a, ok
}

// name returns the anchor ID of a node ID, or the number when unknown.
func (b *book) name(node uint64) string {
	if node == 0 {
		return ""
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if id, ok := b.ids[node]; ok {
		return id
	}
	return fmt.Sprintf("node-%x", node)
}

func (b *book) snapshot() map[string]string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make(map[string]string, len(b.addrs))
	for k, v := range b.addrs {
		out[k] = v
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
