package dns

import (
	"context"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

// handle answers one query. It returns nil when the message must not be
// answered (it is itself a response). It never forwards a mesh name.
func (s *Server) handle(ctx context.Context, req *mdns.Msg, tcp bool) *mdns.Msg {
	if req.Response {
		return nil
	}
	s.stats.queries.Add(1)
	resp := &mdns.Msg{}
	resp.Id = req.Id
	resp.Response = true
	resp.Opcode = req.Opcode
	resp.RecursionDesired = req.RecursionDesired
	resp.CheckingDisabled = req.CheckingDisabled
	resp.RecursionAvailable = len(s.upstream) > 0
	if len(req.Question) == 1 {
		resp.Question = []mdns.Question{req.Question[0]}
	}
	opt, nOpt := ednsOf(req)
	stale := false
	switch {
	case req.Opcode != mdns.OpcodeQuery:
		resp.Rcode = mdns.RcodeNotImplemented
	case len(req.Question) != 1 || nOpt > 1:
		resp.Rcode = mdns.RcodeFormatError
	case opt != nil && opt.Version() != 0:
		resp.Rcode = mdns.RcodeBadVers
	default:
		stale = s.answer(ctx, req, resp, opt)
	}
	s.finish(resp, opt, tcp, stale)
	return resp
}

// ednsOf returns the request's OPT record and how many it has.
func ednsOf(m *mdns.Msg) (*mdns.OPT, int) {
	var opt *mdns.OPT
	n := 0
	for _, rr := range m.Extra {
		if o, ok := rr.(*mdns.OPT); ok {
			opt = o
			n++
		}
	}
	return opt, n
}

// finish adds EDNS0, truncates to what the transport allows and counts.
func (s *Server) finish(resp *mdns.Msg, opt *mdns.OPT, tcp, stale bool) {
	limit := mdns.MinMsgSize
	if opt != nil {
		o := &mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT}}
		o.SetUDPSize(uint16(s.udpSize))
		o.SetDo(opt.Do())
		if stale && (resp.Rcode == mdns.RcodeSuccess || resp.Rcode == mdns.RcodeNameError) {
			code := mdns.ExtendedErrorCodeStaleAnswer
			if resp.Rcode == mdns.RcodeNameError {
				code = mdns.ExtendedErrorCodeStaleNXDOMAINAnswer
			}
			o.Option = append(o.Option, &mdns.EDNS0_EDE{InfoCode: code, ExtraText: "owning scope unreachable"})
		}
		resp.Extra = append(resp.Extra, o)
		limit = min(max(int(opt.UDPSize()), mdns.MinMsgSize), s.udpSize)
	} else if resp.Rcode > 0xF {
		resp.Rcode = mdns.RcodeServerFailure // an extended rcode needs EDNS0
	}
	if tcp {
		limit = mdns.MaxMsgSize
	}
	resp.Truncate(limit)
	if resp.Truncated && !tcp {
		s.stats.truncated.Add(1)
	}
	switch resp.Rcode {
	case mdns.RcodeNameError:
		s.stats.nxdomain.Add(1)
	case mdns.RcodeServerFailure:
		s.stats.servfail.Add(1)
	}
}

// answer fills resp for a well-formed query and reports whether the answer
// is stale.
func (s *Server) answer(ctx context.Context, req *mdns.Msg, resp *mdns.Msg, opt *mdns.OPT) bool {
	q := req.Question[0]
	switch {
	case q.Qclass != mdns.ClassINET:
		resp.Rcode = mdns.RcodeRefused
		return false
	case q.Qtype == mdns.TypeOPT:
		resp.Rcode = mdns.RcodeFormatError
		return false
	case q.Qtype == mdns.TypeAXFR || q.Qtype == mdns.TypeIXFR:
		resp.Rcode = mdns.RcodeRefused // zone transfers are not served
		return false
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		s.stats.overload.Add(1)
		resp.Rcode = mdns.RcodeServerFailure
		return false
	}

	orig, lower := queryLabels(q.Name)
	if isUnder(lower, s.mesh) {
		res := s.lookupMesh(ctx, q.Qtype, orig, lower)
		s.put(resp, res, nil)
		return res.stale
	}
	_, _, base, _ := splitSRV(lower)
	if len(base) > 0 && len(s.search) > 0 && len(base)-1 < s.ndots {
		for _, sd := range s.search {
			fullLower := append(append([]string(nil), lower...), sd...)
			fullOrig := append(append([]string(nil), orig...), sd...)
			if len(fqdn(fullOrig)) > 254 {
				continue // too long to be a name
			}
			res := s.lookupMesh(ctx, q.Qtype, fullOrig, fullLower)
			if res.rcode == mdns.RcodeNameError {
				continue
			}
			cname := &mdns.CNAME{
				Hdr:    mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET, Ttl: res.ttl},
				Target: fqdn(fullOrig),
			}
			if res.rcode != mdns.RcodeSuccess {
				cname = nil // SERVFAIL: say nothing about the name
			}
			s.put(resp, res, cname)
			return res.stale
		}
		if len(base) == 1 {
			// A single-label name is a mesh short name or nothing: never
			// send it upstream.
			resp.Rcode = mdns.RcodeNameError
			return false
		}
	}
	s.forward(ctx, req, resp, opt)
	return false
}

// meshResult is the answer for one mesh name.
type meshResult struct {
	rcode    int
	answer   []mdns.RR
	extra    []mdns.RR
	negative bool   // add the SOA to the authority section
	ttl      uint32 // of the positive records, or of the SOA when negative
	stale    bool
}

// put writes res into resp, after cname when not nil.
func (s *Server) put(resp *mdns.Msg, res meshResult, cname *mdns.CNAME) {
	resp.Rcode = res.rcode
	if res.rcode == mdns.RcodeServerFailure {
		return
	}
	s.stats.mesh.Add(1)
	resp.Authoritative = true
	if cname != nil {
		resp.Answer = append(resp.Answer, cname)
	}
	resp.Answer = append(resp.Answer, res.answer...)
	resp.Extra = append(resp.Extra, res.extra...)
	if res.negative {
		resp.Ns = append(resp.Ns, s.soa(res.ttl))
	}
}

// soa is the mesh domain's SOA record with the given TTL, which is also the
// negative-caching TTL (RFC 2308).
func (s *Server) soa(ttl uint32) *mdns.SOA {
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: s.meshFQDN, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: ttl},
		Ns:      "ns." + s.meshFQDN,
		Mbox:    "hostmaster." + s.meshFQDN,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  ttl,
	}
}

// lookupMesh answers qtype for a name under the mesh. orig and lower are the
// name's labels as asked and in lower case.
func (s *Server) lookupMesh(ctx context.Context, qtype uint16, orig, lower []string) meshResult {
	nx := meshResult{rcode: mdns.RcodeNameError, negative: true, ttl: s.negativeTTL}
	for _, l := range lower {
		if !hostLabel(l) {
			return nx // no mesh name has such a label
		}
	}
	port, proto, base, isSRV := splitSRV(lower)
	name := strings.Join(base, ".")
	ans, found, err := s.r.Lookup(ctx, name)
	if err != nil {
		s.log.Debug("dns mesh lookup failed", "name", name, "err", err)
		return meshResult{rcode: mdns.RcodeServerFailure}
	}
	apex := len(lower) == len(s.mesh)
	if !found && !apex {
		return nx
	}
	ttl := ttlSeconds(ans.TTL)
	negTTL := s.negativeTTL
	if ans.Stale {
		ttl = min(ttl, s.staleTTL)
		negTTL = min(negTTL, s.staleTTL)
	}
	owner := fqdn(orig)
	res := meshResult{rcode: mdns.RcodeSuccess, ttl: ttl, stale: ans.Stale}
	hdr := func(name string, t uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: ttl}
	}
	if isSRV {
		target := fqdn(orig[2:])
		var srvs []mdns.RR
		for _, p := range ans.Ports {
			if strings.EqualFold(p.Name, port) && strings.EqualFold(p.Proto, proto) {
				srvs = append(srvs, &mdns.SRV{Hdr: hdr(owner, mdns.TypeSRV), Port: p.Port, Target: target})
			}
		}
		switch {
		case len(srvs) == 0:
			nx.ttl, nx.stale = negTTL, ans.Stale
			return nx
		case qtype == mdns.TypeSRV || qtype == mdns.TypeANY:
			res.answer = srvs
			res.extra = addrRRs(s.addrs(ans), mdns.TypeANY, func(t uint16) mdns.RR_Header { return hdr(target, t) })
			return res
		}
	} else if qtype == mdns.TypeSOA && apex {
		res.answer = []mdns.RR{s.soa(s.negativeTTL)}
		return res
	} else {
		res.answer = addrRRs(s.addrs(ans), qtype, func(t uint16) mdns.RR_Header { return hdr(owner, t) })
	}
	if len(res.answer) == 0 { // NODATA
		res.negative, res.ttl = true, negTTL
	}
	return res
}

// addrRRs returns the A (qtype A or ANY) and AAAA (AAAA or ANY) records of addrs.
func addrRRs(addrs []netip.Addr, qtype uint16, hdr func(uint16) mdns.RR_Header) []mdns.RR {
	var rrs []mdns.RR
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		switch {
		case a.Is4() && (qtype == mdns.TypeA || qtype == mdns.TypeANY):
			b := a.As4()
			rrs = append(rrs, &mdns.A{Hdr: hdr(mdns.TypeA), A: b[:]})
		case a.Is6() && (qtype == mdns.TypeAAAA || qtype == mdns.TypeANY):
			b := a.As16()
			rrs = append(rrs, &mdns.AAAA{Hdr: hdr(mdns.TypeAAAA), AAAA: b[:]})
		}
	}
	return rrs
}

// addrs are the addresses a name's A/AAAA records give: its VIPs when the
// server answers VIPs and it has some, else its endpoints' addresses.
func (s *Server) addrs(ans Answer) []netip.Addr {
	if s.vips && len(ans.VIPs) > 0 {
		return ans.VIPs
	}
	return ans.Addrs
}
