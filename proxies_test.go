package wsgi_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gowsgi/wsgi"
)

func TestTrustedProxies(t *testing.T) {
	hdrs := []string{
		"X-Forwarded-For", "203.0.113.9, 10.1.2.3",
		"X-Forwarded-Proto", "https",
		"X-Forwarded-Host", "shop.example",
	}
	t.Run("untrusted", func(t *testing.T) {
		h, _ := newHandler(t, "validated", wsgi.WithTrustedProxies("10.0.0.0/8"))
		env := getEnviron(t, serve(t, h), "/environ", hdrs...)
		assert.Equal(t, "127.0.0.1", env["REMOTE_ADDR"], "forwarding headers from anyone else are not believed")
		assert.Equal(t, "http", env["wsgi.url_scheme"])
		assert.NotEqual(t, "shop.example", env["HTTP_HOST"])
		assert.Equal(t, "203.0.113.9, 10.1.2.3", env["HTTP_X_FORWARDED_FOR"], "they stay plain headers")
	})
	t.Run("X-Forwarded", func(t *testing.T) {
		h, _ := newHandler(t, "validated", wsgi.WithTrustedProxies("127.0.0.1", "10.0.0.0/8"))
		env := getEnviron(t, serve(t, h), "/environ", hdrs...)
		assert.Equal(t, "203.0.113.9", env["REMOTE_ADDR"], "the right-most untrusted hop")
		assert.Equal(t, "https", env["wsgi.url_scheme"])
		assert.Equal(t, "shop.example", env["HTTP_HOST"])
		assert.Equal(t, "shop.example", env["SERVER_NAME"])
		assert.Equal(t, "443", env["SERVER_PORT"])
	})
	t.Run("Forwarded", func(t *testing.T) {
		h, _ := newHandler(t, "validated", wsgi.WithTrustedProxies("127.0.0.0/8"))
		env := getEnviron(t, serve(t, h), "/environ",
			"Forwarded", `for="[2001:db8::7]:4711";proto=https;host="api.example:8443"`)
		assert.Equal(t, "2001:db8::7", env["REMOTE_ADDR"])
		assert.Equal(t, "https", env["wsgi.url_scheme"])
		assert.Equal(t, "api.example:8443", env["HTTP_HOST"])
		assert.Equal(t, "8443", env["SERVER_PORT"])
	})
	_, err := wsgi.NewHandler(wsgi.WithApp("x"), wsgi.WithTrustedProxies("not-an-ip"))
	require.ErrorContains(t, err, "WithTrustedProxies")
}
