package wsgi_test

import (
	"expvar"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gowsgi/wsgi"
)

func TestStatsAndExpvar(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithExpvar("gowsgi_test_stats"))
	srv := serve(t, h)
	get(t, srv, "/hello")
	get(t, srv, "/raise")
	// A client may have the whole response a moment before its handler
	// returns.
	eventually(t, func() bool { return h.Stats().InFlight == 0 }, "the requests never ended")
	st := h.Stats()
	assert.Equal(t, uint64(2), st.Served)
	assert.Equal(t, uint64(1), st.Errors)
	assert.Zero(t, st.InFlight)
	v := expvar.Get("gowsgi_test_stats")
	require.NotNil(t, v)
	assert.Contains(t, v.String(), `"Served":2`)
}
