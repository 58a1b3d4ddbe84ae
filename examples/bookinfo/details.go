package bookinfo

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Book is what details answers for a product.
type Book struct {
	ID        int    `json:"id"`
	Title     string `json:"title"`
	Author    string `json:"author"`
	Year      int    `json:"year"`
	Type      string `json:"type"`
	Pages     int    `json:"pages"`
	Publisher string `json:"publisher"`
	Language  string `json:"language"`
	ISBN10    string `json:"ISBN-10"`
	ISBN13    string `json:"ISBN-13"`
}

func (a *App) detailsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", health)
	mux.HandleFunc("GET /details/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(r.PathValue("id"))
		if err != nil || id < 0 {
			http.Error(w, "details: product id must be a non-negative integer", http.StatusBadRequest)
			return
		}
		writeJSON(w, Book{
			ID: id, Title: "The Comedy of Errors", Author: "William Shakespeare", Year: 1595,
			Type: "paperback", Pages: 200, Publisher: "PublisherA", Language: "English",
			ISBN10: "1234567890", ISBN13: "123-1234567890",
		})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}
