package localcloud

import (
	"net/http"
	"net/url"
	"strconv"
)

const (
	defaultPerPage = 20
	maxPerPage     = 200
)

type pageLinks struct {
	First string `json:"first,omitempty"`
	Prev  string `json:"prev,omitempty"`
	Next  string `json:"next,omitempty"`
	Last  string `json:"last,omitempty"`
}

type actionLink struct {
	ID   int    `json:"id"`
	Rel  string `json:"rel"`
	HREF string `json:"href"`
}

type links struct {
	Pages   *pageLinks   `json:"pages,omitempty"`
	Actions []actionLink `json:"actions,omitempty"`
}

type meta struct {
	Total int `json:"total"`
}

// paginate cuts items to the page the request asks for (page, per_page) and builds DO's
// links.pages with absolute URLs that keep every other query parameter (tag_name...).
func paginate[T any](r *http.Request, items []T) ([]T, links, meta) {
	q := r.URL.Query()
	perPage, err := strconv.Atoi(q.Get("per_page"))
	if err != nil || perPage < 1 {
		perPage = defaultPerPage
	}
	perPage = min(perPage, maxPerPage)
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page < 1 {
		page = 1
	}

	total := len(items)
	lastPage := max(1, (total+perPage-1)/perPage)
	start := min((page-1)*perPage, total)
	end := min(start+perPage, total)
	pageItems := items[start:end]
	if pageItems == nil {
		pageItems = []T{}
	}

	pageURL := func(n int) string {
		u := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path}
		v := url.Values{}
		for k, vals := range q {
			v[k] = vals
		}
		v.Set("page", strconv.Itoa(n))
		v.Set("per_page", strconv.Itoa(perPage))
		u.RawQuery = v.Encode()
		return u.String()
	}

	var l links
	if lastPage > 1 {
		p := &pageLinks{}
		if page > 1 {
			p.First = pageURL(1)
			p.Prev = pageURL(min(page-1, lastPage))
		}
		if page < lastPage {
			p.Next = pageURL(page + 1)
			p.Last = pageURL(lastPage)
		}
		l.Pages = p
	}
	return pageItems, l, meta{Total: total}
}
