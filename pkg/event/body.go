package event

import (
	"encoding/binary"
	"encoding/json"
	"math/bits"
)

// Body appends to dst the webhook body for the event: Raw with every
// top-level eventId member removed and eventType set to DefaultType when it
// is absent or null. All other bytes are copied unchanged. Body does not
// allocate beyond growing dst.
func (e *Event) Body(dst []byte) []byte {
	return renderBody(dst, e.Raw)
}

// renderBody expects raw to be a valid JSON object (Parse guarantees it).
// Each kept member is copied from just after its separator ('{' or ',') to
// the end of its value, so the sender's whitespace survives; the text after
// the last member's value (whitespace and '}') is copied as is.
func renderBody(dst, raw []byte) []byte {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return append(dst, raw...)
	}
	i++
	dst = append(dst, raw[:i]...)
	tail, kept, hasType := i, 0, false
	for {
		lead := i
		i = skipSpace(raw, i)
		if i >= len(raw) || raw[i] == '}' {
			break
		}
		keyStart := i
		i = skipString(raw, i)
		key := raw[keyStart:i]
		i = skipSpace(raw, i) + 1 // past ':'
		valStart := skipSpace(raw, i)
		valEnd := skipValue(raw, valStart)
		tail = valEnd
		i = skipSpace(raw, valEnd)
		if i < len(raw) && raw[i] == ',' {
			i++
		}

		drop := keyIs(key, "eventId")
		if keyIs(key, "eventType") {
			if string(raw[valStart:valEnd]) == "null" {
				drop = true
			} else {
				hasType = true
			}
		}
		if drop {
			continue
		}
		if kept > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, raw[lead:valEnd]...)
		kept++
	}
	if !hasType {
		if kept > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `"eventType":"`+DefaultType+`"`...)
	}
	return append(dst, raw[tail:]...)
}

func keyIs(quoted []byte, name string) bool {
	if len(quoted) == len(name)+2 && string(quoted[1:len(quoted)-1]) == name {
		return true
	}
	// Rare: a key spelled with escapes, like "event\u0049d".
	for _, c := range quoted {
		if c == '\\' {
			var s string
			return json.Unmarshal(quoted, &s) == nil && s == name
		}
	}
	return false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i] == '"'.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		if i = skipPlain(b, i); i >= len(b) {
			break
		}
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// skipValue returns the index just past the JSON value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	default: // number, true, false, null
		for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
			i++
		}
		return i
	}
}

// skipPlain returns the index of the first byte from b[i] on that ends a
// string or needs a look of its own in one (see plain8), testing eight
// bytes at a time, or of the first of the last seven or fewer bytes.
func skipPlain(b []byte, i int) int {
	for i+8 <= len(b) {
		n := plain8(b[i:])
		if i += n; n < 8 {
			break
		}
	}
	return i
}

// plain8 returns how many of the first 8 bytes of b come before one that
// ends a string or needs a look of its own in one ('"', '\\' or a control
// character), 8 if none does. It tests them at once in a word:
// (x-lo)&^x&hi has the high bit of x's first zero byte set (and maybe of
// later ones), (x-n*lo)&^x&hi that of its first byte below n.
func plain8(b []byte) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	w := binary.LittleEndian.Uint64(b)
	zero := func(x uint64) uint64 { return (x - lo) &^ x }
	special := (w - 0x20*lo) &^ w // below 0x20
	special |= zero(w ^ '"'*lo)
	special |= zero(w ^ '\\'*lo)
	return bits.TrailingZeros64(special&hi) / 8
}
