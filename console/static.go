package console

import (
	"embed"
	"io/fs"
)

// The page, its script and its style sheet, compiled into the binary: the
// console needs nothing from outside the service, no CDN and no build step.
//
//go:embed static
var static embed.FS

// Static is the console's files: index.html, console.js, console.css.
func Static() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil { // the directory is embedded above
		panic(err)
	}
	return sub
}
