package httpapi

import (
	"bufio"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/flashsale/flashsale/console"
	"github.com/flashsale/flashsale/reservation"
)

// consoleCSP confines the console page to its own files: no inline script,
// no other origin, no framing. A stolen page cannot send the token it
// holds anywhere but this service (docs/security.md).
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// consoleWriteWindow is how long one event may take to reach a console:
// the server's WriteTimeout is set once per response, so a stream that
// lives for hours moves its deadline forward before every event.
const consoleWriteWindow = 10 * time.Second

// consoleRoutes serves the sale console under /admin/ on root (the page and
// its files, which carry no data and need no token) and admin (the event
// stream, behind the admin token), so it moves with the other admin routes
// to whichever listener serves them.
func (s *Server) consoleRoutes(root, admin fiber.Router) {
	if s.console == nil {
		return
	}
	files := console.Static()
	for path, name := range map[string]string{
		"/admin/console":             "index.html",
		"/admin/console/console.js":  "console.js",
		"/admin/console/console.css": "console.css",
	} {
		body, err := fs.ReadFile(files, name)
		if err != nil { // embedded: cannot happen
			panic(err)
		}
		ctype := map[string]string{".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
			".css": "text/css; charset=utf-8"}[name[strings.LastIndexByte(name, '.'):]]
		root.Get(path, func(c *fiber.Ctx) error {
			c.Set(fiber.HeaderContentSecurityPolicy, consoleCSP)
			c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
			c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
			c.Set(fiber.HeaderCacheControl, "no-cache")
			return sendRaw(c, fiber.StatusOK, ctype, body)
		})
	}
	admin.Get("/console/events", s.consoleEvents)
}

// consoleEvents is the console's live feed, as Server-Sent Events: one
// `update` event a second with the page of items asked for (?q= search,
// ?page= from 0, ?sort=sku|busy). The hub reads Redis once a second for
// every console together; a console that falls behind is disconnected and
// its page reconnects.
func (s *Server) consoleEvents(c *fiber.Ctx) error {
	sub, err := s.console.Subscribe(console.View{
		Query: strings.Clone(c.Query("q")),
		Page:  c.QueryInt("page"),
		Sort:  strings.Clone(c.Query("sort")),
	})
	if err != nil {
		return fmt.Errorf("console: %w: %w", err, reservation.ErrUnavailable)
	}
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set("X-Accel-Buffering", "no") // a buffering proxy would hold the events
	conn := c.Context().Conn()
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer sub.Close()
		_ = conn.SetWriteDeadline(time.Now().Add(consoleWriteWindow))
		if _, err := w.WriteString("retry: 2000\n\n"); err != nil || w.Flush() != nil {
			return
		}
		for msg := range sub.C {
			_ = conn.SetWriteDeadline(time.Now().Add(consoleWriteWindow))
			_, _ = w.WriteString("event: update\ndata: ")
			_, _ = w.Write(msg)
			_, _ = w.WriteString("\n\n")
			if err := w.Flush(); err != nil {
				return // the console went away
			}
		}
	})
	return nil
}
