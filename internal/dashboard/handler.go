package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"
)

//go:embed assets
var assets embed.FS

// templates are parsed once, on first use (not at start: every canton process, a proxy too, links
// this package); each page is "base" plus its own content.
var templates = sync.OnceValue(func() map[string]*template.Template {
	funcs := template.FuncMap{
		"pct": func(v float64) string {
			if v > 0 && v < 1 {
				return fmt.Sprintf("%.1f%%", v)
			}
			return fmt.Sprintf("%.0f%%", math.Round(v))
		},
		"num":  func(v float64) string { return f(v) },
		"add":  func(a, b float64) float64 { return a + b },
		"sub":  func(a, b float64) float64 { return a - b },
		"half": func(v float64) float64 { return v / 2 },
		"offsets": func(ss []Split) []float64 { // running start of each split bar
			out := make([]float64, len(ss))
			acc := 0.0
			for i, s := range ss {
				out[i] = acc
				acc += s.Percent
			}
			return out
		},
		"voffsets": func(vs []VersionShare) []float64 {
			out := make([]float64, len(vs))
			acc := 0.0
			for i, s := range vs {
				out[i] = acc
				acc += s.Percent
			}
			return out
		},
		"index1": func(xs []float64, i int) float64 { return xs[i] },
		"indent": func(depth int) []struct{} { return make([]struct{}, depth) },
		"label":  func(s Split, self string) string { return s.Label(self) },
		"trunc": func(n int, s string) string { // fits text in a node box
			if r := []rune(s); len(r) > n {
				return string(r[:n-1]) + "…"
			}
			return s
		},
	}
	base := template.Must(template.New("base").Funcs(funcs).ParseFS(assets, "assets/base.html", "assets/graph.html"))
	out := map[string]*template.Template{}
	for _, name := range []string{"overview", "scope", "service", "notfound"} {
		t := template.Must(template.Must(base.Clone()).ParseFS(assets, "assets/"+name+".html"))
		out[name] = t
	}
	return out
})

// handler serves the dashboard.
type handler struct {
	src          Source
	log          *slog.Logger
	now          func() time.Time
	refresh      time.Duration
	lineageLimit int
	scraper      *scraper
	mux          *http.ServeMux
}

// New returns the dashboard as an http.Handler over src, meant to be
// mounted at the root of the anchor's --http server (links are absolute):
//
//	GET /                              overview: topology graph, scope tree, anchors, proxies
//	GET /scope/{domain}                a scope: services, workloads, policies, lineage
//	GET /service/{namespace}/{name}    a service: traffic, routing split, DestinationRules, policies
//	GET /api/overview.json             the data behind each page, plus "shape" and "live"
//	GET /api/scope/{domain}.json
//	GET /api/service/{namespace}/{name}.json
//	GET /assets/...                    the stylesheet and script (embedded)
//
// namespace may be relative to the mesh ("bookinfo") or absolute.
func New(src Source, opts Options) http.Handler {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	h := &handler{src: src, log: log, now: now, refresh: opts.Refresh, lineageLimit: opts.LineageLimit}
	if h.refresh == 0 {
		h.refresh = 3 * time.Second
	}
	if h.lineageLimit <= 0 {
		h.lineageLimit = 50
	}
	h.scraper = newScraper(opts, log, now)
	static, _ := fs.Sub(assets, "assets/static")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		p := h.overview(r.Context())
		h.html(w, "overview", p, &p.Page)
	})
	mux.HandleFunc("GET /scope/{domain}", func(w http.ResponseWriter, r *http.Request) {
		p := h.scopePage(r.Context(), r.PathValue("domain"))
		h.htmlStatus(w, "scope", p, &p.Page, found(p.Found))
	})
	mux.HandleFunc("GET /service/{ns}/{name}", func(w http.ResponseWriter, r *http.Request) {
		p := h.servicePage(r.Context(), r.PathValue("ns"), r.PathValue("name"))
		h.htmlStatus(w, "service", p, &p.Page, found(p.Found))
	})
	mux.HandleFunc("GET /api/overview.json", func(w http.ResponseWriter, r *http.Request) {
		p := h.overview(r.Context())
		h.json(w, "overview", p, &p.Page, http.StatusOK)
	})
	mux.HandleFunc("GET /api/scope/{file}", func(w http.ResponseWriter, r *http.Request) {
		dom, ok := strings.CutSuffix(r.PathValue("file"), ".json")
		if !ok {
			http.NotFound(w, r)
			return
		}
		p := h.scopePage(r.Context(), dom)
		h.json(w, "scope", p, &p.Page, found(p.Found))
	})
	mux.HandleFunc("GET /api/service/{ns}/{file}", func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutSuffix(r.PathValue("file"), ".json")
		if !ok {
			http.NotFound(w, r)
			return
		}
		p := h.servicePage(r.Context(), r.PathValue("ns"), name)
		h.json(w, "service", p, &p.Page, found(p.Found))
	})
	fileServer := http.StripPrefix("/assets/", http.FileServerFS(static))
	mux.Handle("GET /assets/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		fileServer.ServeHTTP(w, r)
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		d := &meshData{mesh: src.Mesh()}
		p := &struct{ Page }{h.page(d, "Not found", "", "")}
		p.RefreshMS = 0
		h.htmlStatus(w, "notfound", p, &p.Page, http.StatusNotFound)
	})
	h.mux = mux
	return h
}

func found(ok bool) int {
	if ok {
		return http.StatusOK
	}
	return http.StatusNotFound
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	// Everything is same-origin; no inline script or style is used.
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	h.mux.ServeHTTP(w, r)
}

// recorder collects the live values while a page renders. In blank mode it
// renders them empty, so that the output is the page's shape.
type recorder struct {
	blank bool
	live  map[string]string
}

// Live renders a live text: <span data-live="key">text</span>.
func (r *recorder) Live(key, text string) template.HTML { return r.el("span", key, text) }

// TLive is Live inside SVG text.
func (r *recorder) TLive(key, text string) template.HTML { return r.el("tspan", key, text) }

func (r *recorder) el(tag, key, text string) template.HTML {
	if r == nil {
		return template.HTML(template.HTMLEscapeString(text))
	}
	r.live[key] = text
	if r.blank {
		text = ""
	}
	return template.HTML("<" + tag + ` data-live="` + template.HTMLEscapeString(key) + `">` + template.HTMLEscapeString(text) + "</" + tag + ">")
}

// render renders page name into w, after a blank pass that sets the page's
// Shape and Live.
func (h *handler) render(w io.Writer, name string, data any, p *Page) error {
	t := templates()[name]
	p.rec = &recorder{blank: true, live: map[string]string{}}
	sum := sha256.New()
	if err := t.ExecuteTemplate(sum, "base", data); err != nil {
		return err
	}
	p.Shape = hex.EncodeToString(sum.Sum(nil))[:16]
	p.Live = p.rec.live
	p.rec = &recorder{live: map[string]string{}}
	if w == nil {
		return nil
	}
	return t.ExecuteTemplate(w, "base", data)
}

func (h *handler) html(w http.ResponseWriter, name string, data any, p *Page) {
	h.htmlStatus(w, name, data, p, http.StatusOK)
}

func (h *handler) htmlStatus(w http.ResponseWriter, name string, data any, p *Page, status int) {
	var buf bytes.Buffer
	if err := h.render(&buf, name, data, p); err != nil {
		h.log.Error("dashboard render failed", "page", name, "err", err)
		http.Error(w, "dashboard: render "+name+": internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (h *handler) json(w http.ResponseWriter, name string, data any, p *Page, status int) {
	if err := h.render(nil, name, data, p); err != nil {
		h.log.Error("dashboard render failed", "page", name, "err", err)
		http.Error(w, "dashboard: render "+name+": internal error", http.StatusInternalServerError)
		return
	}
	b, err := json.MarshalIndent(data, "", "  ")
	if err != nil {
		h.log.Error("dashboard encode failed", "page", name, "err", err)
		http.Error(w, "dashboard: encode "+name+": internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
