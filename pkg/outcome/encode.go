package outcome

import (
	"errors"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends the record's JSON encoding to b: the same bytes as
// encoding/json's (field order, omitempty, HTML-safe escaping, invalid
// UTF-8 as U+FFFD), without reflection. It fails, like encoding/json, for
// a time whose year is outside 0..9999 or whose zone is 24 hours or more
// from UTC, or a DurationMs that is NaN or infinite; b is returned
// unchanged then.
func (r *Record) AppendJSON(b []byte) ([]byte, error) {
	var e Encoder
	return e.appendJSON(b, r, false)
}

// Encoder encodes records as Record.AppendJSON does, remembering the last
// record's time and whom it is about (instance, ids, tenant, channel,
// status, campaign): the records of one job share them, and encoding them
// is most of the work, so the next such record copies their bytes. The
// zero Encoder is ready to use; one that is kept (pooled) keeps its buffer.
// An Encoder must not be copied after its first use: the copies would
// share that buffer.
type Encoder struct {
	whoOf who
	who   []byte // whoOf's fields, encoded; empty before the first record
}

// who is what an Encoder remembers of the last record: the fields encoded
// after its type, up to campaignID.
type who struct {
	time                                      time.Time
	instance, webhookID, eventID, requestID   string
	org, sandbox, channel, status, campaignID string
}

func whoOf(r *Record) who {
	return who{r.Time, r.Instance, r.WebhookID, r.EventID, r.RequestID, r.Org, r.Sandbox, r.Channel, r.Status, r.CampaignID}
}

// same reports whether w encodes as x does. (A time equal in another
// location is written otherwise.)
func (w *who) same(x *who) bool {
	return w.time.Equal(x.time) && w.time.Location() == x.time.Location() &&
		w.instance == x.instance && w.webhookID == x.webhookID && w.eventID == x.eventID && w.requestID == x.requestID &&
		w.org == x.org && w.sandbox == x.sandbox && w.channel == x.channel && w.status == x.status && w.campaignID == x.campaignID
}

// AppendJSON appends r's JSON encoding to b (see Record.AppendJSON).
func (e *Encoder) AppendJSON(b []byte, r *Record) ([]byte, error) { return e.appendJSON(b, r, true) }

// appendJSON appends r's encoding; keep says whether e remembers whom it
// was about (not worth a buffer for one record).
func (e *Encoder) appendJSON(b []byte, r *Record, keep bool) ([]byte, error) {
	if y := r.Time.Year(); y < 0 || y > 9999 {
		return b, errors.New("outcome: Record.Time: year outside of range [0,9999]")
	}
	if _, off := r.Time.Zone(); off <= -24*3600 || off >= 24*3600 {
		return b, errors.New("outcome: Record.Time: timezone hour outside of range [0,23]")
	}
	if r.DurationMs != nil && (math.IsNaN(*r.DurationMs) || math.IsInf(*r.DurationMs, 0)) {
		return b, errors.New("outcome: Record.DurationMs: unsupported value")
	}
	b = append(b, `{"type":`...)
	b = appendString(b, r.Type)
	if w := whoOf(r); len(e.who) > 0 && e.whoOf.same(&w) {
		b = append(b, e.who...)
	} else {
		start := len(b)
		b = appendWho(b, r)
		if keep {
			e.whoOf, e.who = w, append(e.who[:0], b[start:]...)
		}
	}
	b = field(b, `,"outcome":`, r.Outcome)
	b = field(b, `,"reason":`, r.Reason)
	if r.Attempt != 0 {
		b = strconv.AppendInt(append(b, `,"attempt":`...), int64(r.Attempt), 10)
	}
	if r.HTTPCode != 0 {
		b = strconv.AppendInt(append(b, `,"httpStatus":`...), int64(r.HTTPCode), 10)
	}
	if r.DurationMs != nil {
		b = appendFloat(append(b, `,"durationMs":`...), *r.DurationMs)
	}
	b = field(b, `,"errorClass":`, r.ErrorClass)
	b = field(b, `,"response":`, r.Response)
	if r.ResponseTruncated {
		b = append(b, `,"responseTruncated":true`...)
	}
	if r.RetryInMs != 0 {
		b = strconv.AppendInt(append(b, `,"retryInMs":`...), r.RetryInMs, 10)
	}
	b = field(b, `,"disabledReason":`, r.DisabledReason)
	b = field(b, `,"source":`, r.Source)
	return append(b, '}'), nil
}

// appendWho appends the fields of r from its time to its campaignID.
func appendWho(b []byte, r *Record) []byte {
	b = append(b, `,"time":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","instance":`...)
	b = appendString(b, r.Instance)
	b = field(b, `,"webhookId":`, r.WebhookID)
	b = field(b, `,"eventId":`, r.EventID)
	b = field(b, `,"requestId":`, r.RequestID)
	b = field(b, `,"imsOrg":`, r.Org)
	b = field(b, `,"sandbox":`, r.Sandbox)
	b = field(b, `,"channel":`, r.Channel)
	b = field(b, `,"feedbackStatus":`, r.Status)
	return field(b, `,"campaignID":`, r.CampaignID)
}

// field appends name and s, unless s is empty (omitempty).
func field(b []byte, name, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(append(b, name...), s)
}

const hex = "0123456789abcdef"

// safe[c] is true for the ASCII bytes encoding/json writes as they are
// (with HTML escaping on, its default): not a control character, '"',
// '\\', '<', '>' or '&'; false from utf8.RuneSelf on. Indexed by a byte,
// it needs no bounds check.
var safe = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// safe8 reports whether the first 8 bytes of s are safe, testing them at once
// in a word: none is a control character or non-ASCII, '"' or '&', '<' or
// '>', or '\\'. (x-lo)&^x&hi is non-zero exactly when a byte of x is 0,
// (x-n*lo)&^x&hi when one is below n; a pair differing in one bit is
// tested at once by setting that bit first.
func safe8(s string) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	_ = s[7]
	w := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
	zero := func(x uint64) uint64 { return (x - lo) &^ x }
	bad := (w-0x20*lo)&^w | w // below 0x20 or from 0x80
	bad |= zero((w | 0x04*lo) ^ 0x26*lo)
	bad |= zero((w | 0x02*lo) ^ 0x3e*lo)
	bad |= zero(w ^ '\\'*lo)
	return bad&hi == 0
}

// appendString appends s as a JSON string, escaped as encoding/json does:
// '"' and '\\' with a backslash, \b \f \n \r \t by name, other control
// characters and '<', '>', '&', U+2028 and U+2029 as \u00XX / \u20XX, and
// each byte of invalid UTF-8 as \ufffd.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	// Most strings need no escaping: find the first byte that may, eight
	// at a time, and copy what comes before it at once.
	i := 0
	for i+8 <= len(s) && safe8(s[i:]) {
		i += 8
	}
	for i < len(s) && safe[s[i]] {
		i++
	}
	if i == len(s) {
		return append(append(b, s...), '"')
	}
	start := 0
	for i < len(s) {
		if c := s[i]; c < utf8.RuneSelf {
			if safe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendFloat appends f as encoding/json writes a float64: the shortest
// decimal that reads back as f, in exponent form below 1e-6 and from 1e21.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
