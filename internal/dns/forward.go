package dns

import (
	"context"
	"errors"
	"fmt"
	"strings"

	mdns "github.com/miekg/dns"
)

// forward answers a non-mesh query from the upstream resolvers.
func (s *Server) forward(ctx context.Context, req, resp *mdns.Msg, opt *mdns.OPT) {
	q := req.Question[0]
	if _, lower := queryLabels(q.Name); isUnder(lower, s.mesh) {
		// Unreachable by construction; the guard keeps it so.
		s.log.Error("dns refused to forward a mesh name", "name", q.Name)
		resp.Rcode = mdns.RcodeServerFailure
		return
	}
	if len(s.upstream) == 0 {
		resp.Rcode = mdns.RcodeServerFailure
		return
	}
	m := &mdns.Msg{}
	m.Opcode = mdns.OpcodeQuery
	m.Question = []mdns.Question{q}
	m.RecursionDesired = req.RecursionDesired
	m.CheckingDisabled = req.CheckingDisabled
	do := opt != nil && opt.Do()
	m.SetEdns0(uint16(s.udpSize), do) // client options (e.g. subnet) are not passed on
	r, err := s.exchangeAny(ctx, m)
	if err != nil {
		s.log.Debug("dns forward failed", "name", q.Name, "type", mdns.TypeToString[q.Qtype], "err", err)
		resp.Rcode = mdns.RcodeServerFailure
		return
	}
	s.stats.forwarded.Add(1)
	resp.Rcode = r.Rcode
	resp.RecursionAvailable = r.RecursionAvailable
	resp.AuthenticatedData = r.AuthenticatedData && (do || req.AuthenticatedData)
	resp.Answer = r.Answer
	resp.Ns = r.Ns
	for _, rr := range r.Extra {
		if rr.Header().Rrtype != mdns.TypeOPT {
			resp.Extra = append(resp.Extra, rr)
		}
	}
}

// exchangeAny asks the upstreams in turn, starting with the last one that
// answered, until one gives a usable answer or ctx ends.
func (s *Server) exchangeAny(ctx context.Context, m *mdns.Msg) (*mdns.Msg, error) {
	n := len(s.upstream)
	first := int(s.next.Load()) % n
	var errs []error
	for i := range n {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		idx := (first + i) % n
		up := s.upstream[idx]
		m.Id = mdns.Id()
		actx, cancel := context.WithTimeout(ctx, s.upstreamTimeout)
		r, err := s.exchange(actx, m, up)
		cancel()
		if err == nil {
			err = checkReply(m, r)
		}
		if err != nil {
			s.log.Debug("dns upstream failed", "upstream", up, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", up, err))
			continue
		}
		if idx != first {
			s.next.Store(uint32(idx))
		}
		return r, nil
	}
	return nil, errors.Join(errs...)
}

// checkReply rejects replies that do not answer m or that report a server
// problem another upstream may not have.
func checkReply(m, r *mdns.Msg) error {
	if r == nil || !r.Response || r.Id != m.Id {
		return errors.New("reply is not a response to the query")
	}
	if len(r.Question) != 1 || r.Question[0].Qtype != m.Question[0].Qtype ||
		r.Question[0].Qclass != m.Question[0].Qclass ||
		!strings.EqualFold(r.Question[0].Name, m.Question[0].Name) {
		return errors.New("reply answers another question")
	}
	switch r.Rcode {
	case mdns.RcodeServerFailure, mdns.RcodeRefused, mdns.RcodeNotImplemented, mdns.RcodeFormatError:
		return fmt.Errorf("rcode %s", mdns.RcodeToString[r.Rcode])
	}
	if r.Truncated {
		return errors.New("reply truncated over TCP")
	}
	return nil
}

// exchangeUpstream asks one upstream over UDP, and over TCP when the UDP
// answer is truncated.
func exchangeUpstream(ctx context.Context, m *mdns.Msg, upstream string) (*mdns.Msg, error) {
	r, _, err := (&mdns.Client{Net: "udp"}).ExchangeContext(ctx, m, upstream)
	if err == nil && r.Truncated {
		r, _, err = (&mdns.Client{Net: "tcp"}).ExchangeContext(ctx, m, upstream)
	}
	return r, err
}
