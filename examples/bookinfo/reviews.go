package bookinfo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/metadata"

	"canton.dev/canton/examples/bookinfo/ratingspb"
)

// reviewStyles is the star colour of each reviews version; v1 shows no stars.
var reviewStyles = map[string]string{"v1": "", "v2": "black", "v3": "red"}

// ratingsTimeout bounds reviews' call to ratings (Istio's reviews uses 10s).
const ratingsTimeout = 10 * time.Second

// ReviewList is what reviews answers for a product.
type ReviewList struct {
	ID      int      `json:"id"`
	Version string   `json:"version"` // the reviews version that answered
	Reviews []Review `json:"reviews"`
}

// Review is one reviewer's text and, from v2 on, their rating.
type Review struct {
	Reviewer string  `json:"reviewer"`
	Text     string  `json:"text"`
	Rating   *Rating `json:"rating,omitempty"`
}

// Rating is a review's stars, or why there are none.
type Rating struct {
	Stars int    `json:"stars,omitempty"`
	Color string `json:"color,omitempty"`
	Error string `json:"error,omitempty"`
}

var reviewTexts = []Review{
	{Reviewer: "Reviewer1", Text: "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"},
	{Reviewer: "Reviewer2", Text: "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare."},
}

func (a *App) reviewsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", health)
	mux.HandleFunc("GET /reviews/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(r.PathValue("id"))
		if err != nil || id < 0 || id > 1<<30 {
			http.Error(w, "reviews: product id must be a non-negative integer", http.StatusBadRequest)
			return
		}
		out := ReviewList{ID: id, Version: a.cfg.Version, Reviews: append([]Review(nil), reviewTexts...)}
		if color := reviewStyles[a.cfg.Version]; color != "" {
			stars, err := a.ratingsFor(r.Context(), r.Header, id)
			for i := range out.Reviews {
				rt := &Rating{Color: color}
				if err != nil {
					rt = &Rating{Error: "Ratings service is currently unavailable"}
				} else if s, ok := stars[out.Reviews[i].Reviewer]; ok {
					rt.Stars = int(s)
				} else {
					rt = nil
				}
				out.Reviews[i].Rating = rt
			}
			if err != nil {
				a.log.Info("ratings call failed", "err", err)
			}
		}
		writeJSON(w, out)
	})
	return mux
}

// ratingsFor asks ratings, through the sidecar, for the stars of product id.
func (a *App) ratingsFor(ctx context.Context, in http.Header, id int) (map[string]int32, error) {
	ctx, cancel := context.WithTimeout(ctx, ratingsTimeout)
	defer cancel()
	_, _, conn := a.sidecar()
	if conn == nil && !a.cfg.RatingsOverHTTP {
		return nil, &callError{service: Ratings, err: fmt.Errorf("no sidecar")}
	}
	if a.cfg.RatingsOverHTTP {
		b, err := a.get(ctx, in, Ratings, "/ratings/"+strconv.Itoa(id))
		if err != nil {
			return nil, err
		}
		var resp struct {
			Ratings map[string]int32 `json:"ratings"`
		}
		if err := json.Unmarshal(b, &resp); err != nil {
			return nil, &callError{service: Ratings, err: fmt.Errorf("bad answer: %w", err)}
		}
		return resp.Ratings, nil
	}
	var md []string
	for _, h := range Propagated {
		for _, v := range in.Values(h) {
			md = append(md, h, v)
		}
	}
	ctx = metadata.AppendToOutgoingContext(ctx, md...)
	resp, err := ratingspb.NewRatingsClient(conn).GetRatings(ctx, &ratingspb.GetRatingsRequest{ProductId: int32(id)})
	if err != nil {
		return nil, &callError{service: Ratings, err: err}
	}
	return resp.GetRatings(), nil
}
