package bookinfo

import (
	"encoding/json"
	"html/template"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The page's machine-readable outcome, on its <body> element, for the demo's
// traffic generator and tests: data-reviews-version="v2" (empty when reviews
// failed), data-ratings="stars|unavailable|none", data-details="ok|unavailable".
const (
	AttrReviewsVersion = "data-reviews-version"
	AttrRatings        = "data-ratings"
	AttrDetails        = "data-details"
)

// userCookie holds the name a browser user logged in with; it becomes the
// end-user header of productpage's calls.
const userCookie = "user"

type pageData struct {
	User           string
	Book           *Book
	DetailsError   string
	Reviews        *ReviewList
	ReviewsError   string
	Ratings        string
	Took           time.Duration
	ReviewsVersion string
}

// pageTemplate is parsed on first use: every canton process links this package (the demo), and
// parsing at init cost each of them, proxies included, memory for a page only the demo serves.
var pageTemplate = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("page").Funcs(template.FuncMap{
		"stars": func(n int) string { return strings.Repeat("★", n) + strings.Repeat("☆", max(0, 5-n)) },
	}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Bookinfo · Canton</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#222}
header{background:#1f2d3d;color:#fff;padding:.8em 1.5em;display:flex;justify-content:space-between;align-items:center}
main{display:grid;grid-template-columns:1fr 1fr;gap:1.5em;padding:1.5em;max-width:1100px}
section{background:#fff;border-radius:8px;padding:1em 1.5em;box-shadow:0 1px 3px #0002}
.meta{color:#667;font-size:.9em}.err{color:#b00}
.stars-black{color:#111}.stars-red{color:#d00}
blockquote{margin:.8em 0;border-left:3px solid #ccd;padding-left:.8em}
form{display:inline}
</style></head>
<body data-reviews-version="{{.ReviewsVersion}}" data-ratings="{{.Ratings}}" data-details="{{if .Book}}ok{{else}}unavailable{{end}}">
<header><strong>BookInfo Sample</strong>
<span>{{if .User}}signed in as <b>{{.User}}</b> <form method="post" action="/logout"><button>Sign out</button></form>
{{else}}<form method="post" action="/login"><input name="username" placeholder="user (try jason)" size="14"> <button>Sign in</button></form>{{end}}</span>
</header>
<main>
<section><h2>The Comedy of Errors</h2>
<p>Summary: Wikipedia Summary: The Comedy of Errors is one of William Shakespeare's early plays. It is his shortest and one of his most farcical comedies.</p>
<h3>Book Details</h3>
{{with .Book}}<dl><dt>Type</dt><dd>{{.Type}}</dd><dt>Pages</dt><dd>{{.Pages}}</dd><dt>Publisher</dt><dd>{{.Publisher}}</dd>
<dt>Language</dt><dd>{{.Language}}</dd><dt>ISBN-10</dt><dd>{{.ISBN10}}</dd><dt>ISBN-13</dt><dd>{{.ISBN13}}</dd></dl>
{{else}}<p class="err">Sorry, product details are currently unavailable for this book ({{.DetailsError}}).</p>{{end}}
</section>
<section><h3>Book Reviews</h3>
{{with .Reviews}}{{range .Reviews}}<blockquote><p>{{.Text}}</p><small>— {{.Reviewer}}</small>
{{with .Rating}}{{if .Error}}<p class="err">{{.Error}}</p>{{else}}<p class="stars-{{.Color}}">{{stars .Stars}}</p>{{end}}{{end}}</blockquote>
{{end}}<p class="meta">Reviews served by: <b>reviews-{{.Version}}</b></p>
{{else}}<p class="err">Sorry, product reviews are currently unavailable for this book ({{.ReviewsError}}).</p>{{end}}
</section>
</main>
<p class="meta" style="padding:0 1.5em">productpage called details and reviews through its Canton sidecar in {{.Took}}.</p>
</body></html>
`))
})

var indexPage = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Bookinfo · Canton</title></head>
<body style="font-family:system-ui,sans-serif;margin:2em">
<h1>Bookinfo on Canton</h1>
<p>productpage calls details and reviews through its sidecar; reviews v2 and v3 call ratings over gRPC.</p>
<p><a href="/productpage">Open the product page</a> (sign in as <code>jason</code> to be routed by the end-user header).</p>
</body></html>
`

func (a *App) productPageHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", health)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(indexPage))
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		user := strings.TrimSpace(r.PostFormValue("username"))
		if user == "" || len(user) > 64 || strings.ContainsAny(user, ";,\" \t\r\n") {
			http.Error(w, "productpage: a user name is 1..64 characters without spaces, quotes, commas or semicolons", http.StatusBadRequest)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: userCookie, Value: user, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		http.Redirect(w, r, "/productpage", http.StatusSeeOther)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: userCookie, Value: "", Path: "/", MaxAge: -1})
		http.Redirect(w, r, "/productpage", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /productpage", a.productPage)
	return mux
}

func (a *App) productPage(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	in := r.Header.Clone()
	user := in.Get("end-user")
	if user == "" {
		if c, err := r.Cookie(userCookie); err == nil && c.Value != "" {
			user = c.Value
			in.Set("end-user", user)
		}
	}
	d := pageData{User: user, Ratings: "none"}
	type result struct {
		body []byte
		err  error
	}
	details, reviews := make(chan result, 1), make(chan result, 1)
	go func() { b, err := a.get(r.Context(), in, Details, "/details/0"); details <- result{b, err} }()
	go func() { b, err := a.get(r.Context(), in, Reviews, "/reviews/0"); reviews <- result{b, err} }()
	if res := <-details; res.err != nil {
		d.DetailsError = res.err.Error()
	} else {
		d.Book = new(Book)
		if err := json.Unmarshal(res.body, d.Book); err != nil {
			d.Book, d.DetailsError = nil, "details sent a bad answer"
		}
	}
	if res := <-reviews; res.err != nil {
		d.ReviewsError = res.err.Error()
	} else {
		d.Reviews = new(ReviewList)
		if err := json.Unmarshal(res.body, d.Reviews); err != nil {
			d.Reviews, d.ReviewsError = nil, "reviews sent a bad answer"
		}
	}
	if d.Reviews != nil {
		d.ReviewsVersion = d.Reviews.Version
		for _, rv := range d.Reviews.Reviews {
			switch {
			case rv.Rating == nil:
			case rv.Rating.Error != "":
				d.Ratings = "unavailable"
			case d.Ratings == "none":
				d.Ratings = "stars"
			}
		}
	}
	if d.Book == nil || d.Reviews == nil {
		a.log.Info("page incomplete", "details_err", d.DetailsError, "reviews_err", d.ReviewsError)
	}
	d.Took = time.Since(start).Round(time.Millisecond)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTemplate().Execute(w, d); err != nil {
		a.log.Warn("render page", "err", err)
	}
}
