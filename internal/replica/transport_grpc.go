package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// gRPC transport: each node opens one client stream to every peer it sends to
// (so a pair of nodes uses one stream per direction). Every stream message is a
// BytesValue holding one batch frame (see EncodeBatch); the sender's and the
// intended receiver's node IDs travel in the stream's metadata. The service is
// registered by hand (no generated code): canton.replica.v1.Raft/Stream.
//
// Frames larger than grpcChunk (snapshots, big coalesced batches) are split so
// that no gRPC message exceeds the server's default 4 MiB receive limit: every
// stream message is one flag byte (1: more chunks follow, 0: last chunk) and a
// piece of the frame.

const (
	grpcServiceName = "canton.replica.v1.Raft"
	grpcStreamPath  = "/" + grpcServiceName + "/Stream"
	mdFrom          = "canton-raft-from"
	mdTo            = "canton-raft-to"
	grpcChunk       = 1 << 20
	maxFrame        = 1 << 30 // refuse to reassemble more than this
)

// streamServer is the handler type of the hand-written service descriptor.
type streamServer interface {
	serveStream(grpc.ServerStream) error
}

var grpcStreamDesc = grpc.StreamDesc{
	StreamName:    "Stream",
	ClientStreams: true,
	ServerStreams: true,
	Handler: func(srv any, ss grpc.ServerStream) error {
		return srv.(streamServer).serveStream(ss)
	},
}

var grpcServiceDesc = grpc.ServiceDesc{
	ServiceName: grpcServiceName,
	HandlerType: (*streamServer)(nil),
	Streams:     []grpc.StreamDesc{grpcStreamDesc},
	Metadata:    "internal/replica/transport_grpc.go",
}

// GRPCConfig configures a GRPCTransport.
type GRPCConfig struct {
	// NodeID is this node's raft ID.
	NodeID uint64
	// Resolve returns a peer's address ("host:port"). It is called on every
	// (re)connection, so the answer may change over time.
	Resolve func(node uint64) (addr string, ok bool)
	// DialOptions are used for every peer connection (e.g. mTLS credentials).
	// Nil means plaintext, which only tests should use.
	DialOptions []grpc.DialOption
	// QueueSize is the number of batches buffered per peer; beyond it Send drops.
	// Zero means 1024.
	QueueSize int
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// GRPCTransport carries raft batches over gRPC streams.
type GRPCTransport struct {
	cfg GRPCConfig
	log *slog.Logger

	handler atomic.Pointer[Handler]
	drop    atomic.Pointer[func(from, to uint64) bool]

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	peers  map[uint64]*grpcPeer
	closed bool
}

// NewGRPCTransport returns a transport; register it on a server with Register and
// bind it to a host (Open does it when it is Config.Transport).
func NewGRPCTransport(cfg GRPCConfig) (*GRPCTransport, error) {
	if cfg.NodeID == 0 {
		return nil, errors.New("replica: grpc transport: NodeID must be non-zero")
	}
	if cfg.Resolve == nil {
		return nil, errors.New("replica: grpc transport: Resolve must be set")
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &GRPCTransport{
		cfg:    cfg,
		log:    cfg.Logger.With("node", cfg.NodeID, "component", "raft-transport"),
		ctx:    ctx,
		cancel: cancel,
		peers:  make(map[uint64]*grpcPeer),
	}, nil
}

// Register adds the raft stream service to s (the anchor's shared server).
func (t *GRPCTransport) Register(s grpc.ServiceRegistrar) {
	s.RegisterService(&grpcServiceDesc, t)
}

// SetHandler sets where received batches go.
func (t *GRPCTransport) SetHandler(h Handler) { t.handler.Store(&h) }

// SetDropFunc installs a test hook: traffic from -> to is dropped while f returns
// true. It is checked when sending (from = this node) and when receiving (to =
// this node). Nil removes the hook. Safe for concurrent use.
func (t *GRPCTransport) SetDropFunc(f func(from, to uint64) bool) {
	if f == nil {
		t.drop.Store(nil)
		return
	}
	t.drop.Store(&f)
}

func (t *GRPCTransport) dropped(from, to uint64) bool {
	f := t.drop.Load()
	return f != nil && (*f)(from, to)
}

func (t *GRPCTransport) deliver() Handler {
	if h := t.handler.Load(); h != nil {
		return *h
	}
	return nil
}

// Send queues batch for node to; it never blocks and drops when the peer's queue is full.
func (t *GRPCTransport) Send(to uint64, batch []Envelope) {
	if to == t.cfg.NodeID || t.dropped(t.cfg.NodeID, to) {
		return
	}
	p := t.peer(to)
	if p == nil {
		return
	}
	select {
	case p.q <- batch:
	default:
		p.drops.Add(1)
	}
}

// Close stops all streams. It does not stop the gRPC server.
func (t *GRPCTransport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
	return nil
}

type grpcPeer struct {
	id    uint64
	q     chan []Envelope
	drops atomic.Uint64
}

func (t *GRPCTransport) peer(id uint64) *grpcPeer {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	p := t.peers[id]
	if p == nil {
		p = &grpcPeer{id: id, q: make(chan []Envelope, t.cfg.QueueSize)}
		t.peers[id] = p
		t.wg.Go(func() { t.runPeer(p) })
	}
	return p
}

// runPeer keeps a stream to p open and writes its queue to it, reconnecting with
// exponential backoff. While the peer is unreachable its queue is discarded (raft
// retries) and the host is told.
func (t *GRPCTransport) runPeer(p *grpcPeer) {
	const minBackoff, maxBackoff = 20 * time.Millisecond, 2 * time.Second
	backoff := minBackoff
	var conn *grpc.ClientConn
	var connAddr string
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for t.ctx.Err() == nil {
		addr, ok := t.cfg.Resolve(p.id)
		var err error
		if !ok {
			err = fmt.Errorf("no address for node %d", p.id)
		} else if conn == nil || addr != connAddr {
			if conn != nil {
				conn.Close()
			}
			conn, err = grpc.NewClient(addr, t.cfg.DialOptions...)
			if err != nil {
				conn = nil
			}
			connAddr = addr
		}
		if err == nil {
			var sent bool
			sent, err = t.stream(p, conn)
			if sent {
				backoff = minBackoff
			}
		}
		if t.ctx.Err() != nil {
			return
		}
		t.log.Debug("raft peer unreachable", "peer", p.id, "addr", addr, "err", err, "retry_in", backoff)
		if h := t.deliver(); h != nil {
			h.PeerUnreachable(p.id)
		}
		// Discard what is queued: it is stale by the time the peer is back.
		timer := time.NewTimer(backoff)
	wait:
		for {
			select {
			case <-p.q:
			case <-timer.C:
				break wait
			case <-t.ctx.Done():
				timer.Stop()
				return
			}
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// stream runs one stream until it fails; sent reports whether any frame went out.
func (t *GRPCTransport) stream(p *grpcPeer, conn *grpc.ClientConn) (sent bool, err error) {
	ctx, cancel := context.WithCancel(t.ctx)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx,
		mdFrom, strconv.FormatUint(t.cfg.NodeID, 10),
		mdTo, strconv.FormatUint(p.id, 10))
	cs, err := conn.NewStream(ctx, &grpcStreamDesc, grpcStreamPath)
	if err != nil {
		return false, err
	}
	// The server never sends; Recv returns when the stream ends.
	ended := make(chan error, 1)
	go func() {
		var m wrapperspb.BytesValue
		ended <- cs.RecvMsg(&m)
	}()
	var merged []Envelope
	for {
		select {
		case <-t.ctx.Done():
			_ = cs.CloseSend()
			return sent, t.ctx.Err()
		case err := <-ended:
			if err == io.EOF {
				err = errors.New("stream closed by peer")
			}
			return sent, err
		case b := <-p.q:
			// Coalesce everything already queued into one frame.
			merged = append(merged[:0], b...)
			for more := true; more && len(merged) < 4096; {
				select {
				case b := <-p.q:
					merged = append(merged, b...)
				default:
					more = false
				}
			}
			frame, err := EncodeBatch(merged)
			clear(merged)
			if err != nil {
				t.log.Error("dropping batch that cannot be encoded", "peer", p.id, "err", err)
				continue
			}
			for len(frame) > 0 {
				n := min(len(frame), grpcChunk)
				chunk := make([]byte, 1+n)
				if n < len(frame) {
					chunk[0] = 1
				}
				copy(chunk[1:], frame[:n])
				frame = frame[n:]
				if err := cs.SendMsg(wrapperspb.Bytes(chunk)); err != nil {
					return sent, err
				}
			}
			sent = true
		}
	}
}

// serveStream receives the frames of one peer's stream.
func (t *GRPCTransport) serveStream(ss grpc.ServerStream) error {
	md, _ := metadata.FromIncomingContext(ss.Context())
	from, err := mdUint(md, mdFrom)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	to, err := mdUint(md, mdTo)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if to != t.cfg.NodeID {
		return status.Errorf(codes.FailedPrecondition, "raft stream for node %d reached node %d", to, t.cfg.NodeID)
	}
	var frame []byte
	for {
		var m wrapperspb.BytesValue
		if err := ss.RecvMsg(&m); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		v := m.GetValue()
		if len(v) < 1 || v[0] > 1 {
			return status.Errorf(codes.InvalidArgument, "raft chunk from node %d: bad flag", from)
		}
		if len(frame)+len(v)-1 > maxFrame {
			return status.Errorf(codes.ResourceExhausted, "raft frame from node %d larger than %d bytes", from, maxFrame)
		}
		if v[0] == 1 || len(frame) > 0 {
			frame = append(frame, v[1:]...)
			if v[0] == 1 {
				continue
			}
			v = frame
			frame = nil
		} else {
			v = v[1:]
		}
		if t.dropped(from, t.cfg.NodeID) {
			continue
		}
		batch, err := DecodeBatch(v)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "raft frame from node %d: %v", from, err)
		}
		if h := t.deliver(); h != nil {
			h.Receive(from, batch)
		}
	}
}

func mdUint(md metadata.MD, key string) (uint64, error) {
	v := md.Get(key)
	if len(v) != 1 {
		return 0, fmt.Errorf("missing metadata %s", key)
	}
	n, err := strconv.ParseUint(v[0], 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("bad metadata %s=%q", key, v[0])
	}
	return n, nil
}
