package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/dlq"
)

func TestPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"evt-1", "evt-1"},
		{"org ümlaut", "org ümlaut"},
		{"a\x1b]0;owned\x07b", `a\x1b]0;owned\ab`},
		{"\x1b[2J\x1b[H", `\x1b[2J\x1b[H`},
		{"tab\tnew\nline\rcr", `tab\tnew\nline\rcr`},
		{"csi\u009b31m", `csi\u009b31m`},
		{"rtl\u202eevil", `rtl\u202eevil`},
		{"bad\xffbyte", `bad\xffbyte`},
		{"del\x7f", `del\x7f`},
	}
	for _, tt := range tests {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestTerminalWriter(t *testing.T) {
	var b bytes.Buffer
	w := &terminalWriter{w: &b}
	for _, p := range []string{"ok\n\tprogress\r", "\x1b[31mred", "\xc2", "\x9b and é\xc3", "\xa9\xff\x00", "rtl\u202e"} {
		if n, err := w.Write([]byte(p)); n != len(p) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", p, n, err)
		}
	}
	want := "ok\n\tprogress\r\\x1b[31mred\\u009b and éé\\xff\\x00rtl\\u202e"
	if b.String() != want {
		t.Errorf("wrote %q, want %q", b.String(), want)
	}
}

// A dead letter whose webhook-id and headers hold escape sequences is listed
// and shown with them escaped, its columns intact.
func TestDLQOutputEscapesControlCharacters(t *testing.T) {
	evil := "evt\x1b]0;owned\x07\x1b[2J\ttab\nline"
	rec := dlq.Record{Headers: []kgo.RecordHeader{{Key: "webhook-id", Value: []byte(evil)}}, Value: []byte("{\"a\":\"\u009b31m\"}")}
	rec.Reason, rec.WebhookID, rec.FailedAt = "invalid_event", evil, time.Unix(0, 0).UTC()
	rec.Org, rec.Sandbox = "org\x1b[1m", "prod"
	var list, show bytes.Buffer
	printDLQTable(&list, []dlq.Record{rec})
	printDLQRecord(&terminalWriter{w: &show}, rec)
	for name, out := range map[string]string{"list": list.String(), "show": show.String()} {
		if strings.ContainsAny(out, "\x1b\x07") || strings.Contains(out, "\u009b") {
			t.Errorf("%s printed a control character: %q", name, out)
		}
		if !strings.Contains(out, `evt\x1b]0;owned\a\x1b[2J\ttab\nline`) {
			t.Errorf("%s does not show the escaped id: %q", name, out)
		}
	}
	if lines := strings.Count(list.String(), "\n"); lines != 3 { // header, the record, the count
		t.Errorf("list printed %d lines, want 3:\n%s", lines, list.String())
	}
}
