package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"
)

// Values printed to a terminal come from records and configs that anyone
// who can produce to a topic or call the admin API wrote. Escape
// sequences in them could move the cursor, rewrite what an operator sees
// or set the window title, so tables escape every cell (printable) and
// everything else written in table mode goes through a terminal writer.

// printable returns s unchanged if every character in it is printable, or
// else s quoted as Go would, without the surrounding quotes: control,
// format (bidirectional overrides) and invalid bytes become \x1b, \u202e.
func printable(s string) string {
	for _, r := range s {
		if r == utf8.RuneError || !strconv.IsPrint(r) {
			q := strconv.Quote(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}

// table writes aligned columns; every cell is passed through printable,
// so a value cannot break the columns or reach the terminal raw.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, flags uint) *table {
	return &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', flags)}
}

// row writes one line, each cell formatted with fmt.Sprint.
func (t *table) row(cells ...any) {
	var b strings.Builder
	for i, c := range cells {
		if i > 0 {
			b.WriteByte('\t')
		}
		b.WriteString(printable(fmt.Sprint(c)))
	}
	b.WriteByte('\n')
	_, _ = io.WriteString(t.tw, b.String())
}

func (t *table) flush() { _ = t.tw.Flush() }

// terminalWriter passes text to w with every control character except
// newline, tab and carriage return (progress lines) escaped as \x1b or
// \u009b, format characters (bidirectional overrides) as \u202e, and
// invalid UTF-8 bytes as \xff. Values in tables are escaped further
// (printable), carriage returns included. A character split across two
// writes is held until the second.
type terminalWriter struct {
	w       io.Writer
	pending []byte
}

func (t *terminalWriter) Write(p []byte) (int, error) {
	in := p
	if len(t.pending) > 0 {
		in = append(t.pending, p...)
		t.pending = nil
	}
	out := make([]byte, 0, len(in))
	for i := 0; i < len(in); {
		r, n := utf8.DecodeRune(in[i:])
		switch {
		case r == utf8.RuneError && n <= 1 && !utf8.FullRune(in[i:]):
			t.pending = append(t.pending, in[i:]...)
			i = len(in)
			continue
		case r == utf8.RuneError && n <= 1:
			out = fmt.Appendf(out, `\x%02x`, in[i])
		case r == '\n' || r == '\t' || r == '\r':
			out = append(out, in[i])
		case r < 0x20 || r == 0x7f:
			out = fmt.Appendf(out, `\x%02x`, r)
		case r >= 0x80 && r <= 0x9f, unicode.Is(unicode.Cf, r): // C1 controls; format characters (bidi overrides)
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			out = append(out, in[i:i+n]...)
		}
		i += n
	}
	if _, err := t.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
