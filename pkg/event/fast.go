package event

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// parseFast is Parse's fast path. In one pass over raw it checks the JSON
// syntax as encoding/json does (json.Valid) and the rules of
// schemas/feedback-event.schema.json, and it extracts the routing fields.
// It says ok only for a record the schema accepts, with the fields the
// schema path would extract; for anything else Parse asks the JSON Schema
// validator, which stays the reference and words the error.
// FuzzParseFastMatchesSchema holds the two to the same decisions.
//
// The schema is restated here, so a change to the schema file needs the
// same change below; TestParseFastMatchesSchema and the fuzz target fail
// until both agree.
func parseFast(raw []byte) (*Event, bool) {
	var top topMembers
	if !scanTop(raw, &top) {
		return nil, false
	}

	// Properties of the top-level object, in the schema's order.
	var id []byte
	if top.eventID.present() {
		var ok bool
		if id, ok = stringValue(raw, top.eventID); !ok || !IsEventID(id) {
			return nil, false
		}
	}
	requestID, ok := stringValue(raw, top.requestID)
	if !ok || !runesBetween(requestID, 1, 256) {
		return nil, false
	}
	org, ok := stringValue(raw, top.imsOrg)
	if !ok || !IsTenantID(org) {
		return nil, false
	}
	if !isObject(raw, top.sandbox) {
		return nil, false
	}
	sandboxID, ok := stringValue(raw, member(raw, top.sandbox, "id"))
	if !ok || !IsTenantID(sandboxID) {
		return nil, false
	}
	if name := member(raw, top.sandbox, "name"); name.present() && !isString(raw, name) || hasMember(raw, top.sandbox, "name", 2) {
		return nil, false
	}
	channel, ok := stringValue(raw, top.channel)
	if !ok {
		return nil, false
	}
	switch string(channel) {
	case "email", "sms":
	default:
		return nil, false
	}
	if top.eventType.present() && string(raw[top.eventType.start:top.eventType.end]) != "null" {
		if t, ok := stringValue(raw, top.eventType); !ok || !runesBetween(t, 1, 128) {
			return nil, false
		}
	}
	if !isObject(raw, top.messageExecution) {
		return nil, false
	}
	campaignID, ok := stringValue(raw, member(raw, top.messageExecution, "campaignID"))
	if !ok || !runesBetween(campaignID, 1, 128) {
		return nil, false
	}
	if !isObject(raw, top.messageDeliveryFeedback) {
		return nil, false
	}
	fs := member(raw, top.messageDeliveryFeedback, "feedbackStatus")
	if !isObject(raw, fs) {
		return nil, false
	}
	status, ok := stringValue(raw, member(raw, fs, "value"))
	if !ok || !runesBetween(status, 1, 64) {
		return nil, false
	}

	// One allocation for all the strings: they share one copy of their bytes.
	var sb strings.Builder
	sb.Grow(len(id) + len(requestID) + len(org) + len(sandboxID) + len(campaignID) + len(status))
	for _, b := range [][]byte{id, requestID, org, sandboxID, campaignID} {
		sb.Write(b)
	}
	st := interned(status)
	if st == "" {
		sb.Write(status)
	}
	all := sb.String()
	next := func(b []byte) string {
		s := all[:len(b)]
		all = all[len(b):]
		return s
	}
	ev := &Event{Raw: raw, ID: next(id), RequestID: next(requestID), Org: next(org),
		SandboxID: next(sandboxID), Channel: interned(channel), CampaignID: next(campaignID), Status: st}
	if st == "" {
		ev.Status = next(status)
	}
	return ev, true
}

// interned returns the constant equal to b among the channels and the
// deliverable statuses, or "" if there is none.
func interned(b []byte) string {
	switch string(b) {
	case "email":
		return "email"
	case "sms":
		return "sms"
	case StatusSent:
		return StatusSent
	case StatusDelivered:
		return StatusDelivered
	case StatusBounce:
		return StatusBounce
	case StatusError:
		return StatusError
	}
	return ""
}

// span is where a JSON value lies in the record: raw[start:end]. The zero
// span is an absent member (no value starts at offset 0 inside an object).
type span struct{ start, end int }

func (s span) present() bool { return s.end > 0 }

// topMembers are the members of the top-level object the schema has rules
// for. As in the map the schema validator decodes into, a duplicated name
// takes its last value.
type topMembers struct {
	eventID, requestID, imsOrg, sandbox, channel, eventType, messageExecution, messageDeliveryFeedback span
}

// slot returns where to note the value of the member named by the quoted
// key, or nil if the schema has no rule for it.
func (m *topMembers) slot(quoted []byte) *span {
	name := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(name, '\\') >= 0 { // rare: "ims\u004frg"
		var s string
		if json.Unmarshal(quoted, &s) != nil {
			return nil
		}
		name = []byte(s)
	}
	switch string(name) {
	case "eventId":
		return &m.eventID
	case "requestId":
		return &m.requestID
	case "imsOrg":
		return &m.imsOrg
	case "sandbox":
		return &m.sandbox
	case "channel":
		return &m.channel
	case "eventType":
		return &m.eventType
	case "messageExecution":
		return &m.messageExecution
	case "messageDeliveryFeedback":
		return &m.messageDeliveryFeedback
	}
	return nil
}

// scanTop reports whether raw is one valid JSON text holding a non-empty
// object, and notes where the members in m are.
func scanTop(raw []byte, m *topMembers) bool {
	var sc scanner
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return false
	}
	i = skipSpace(raw, i+1)
	for {
		k := i
		if i = scanString(raw, i); i < 0 {
			return false // also "{}", which lacks the required members
		}
		key := raw[k:i]
		if i = skipSpace(raw, i); i >= len(raw) || raw[i] != ':' {
			return false
		}
		v := skipSpace(raw, i+1)
		if i = sc.value(raw, v, 1); i < 0 {
			return false
		}
		if p := m.slot(key); p != nil {
			if p.present() { // a routed member twice: the schema path says so
				return false
			}
			*p = span{v, i}
		}
		if i = skipSpace(raw, i); i >= len(raw) {
			return false
		}
		if raw[i] == '}' {
			return skipSpace(raw, i+1) == len(raw)
		}
		if raw[i] != ',' {
			return false
		}
		i = skipSpace(raw, i+1)
	}
}

// member returns the value of the member of the object at obj whose name
// is name, or an absent span if there is none or more than one (the schema
// path refuses routed members given twice). The object must be valid JSON
// (scanTop checked it).
func member(raw []byte, obj span, name string) span {
	var found span
	i := skipSpace(raw, obj.start+1)
	for raw[i] == '"' {
		k := i
		i = skipString(raw, i)
		key := raw[k:i]
		v := skipSpace(raw, skipSpace(raw, i)+1)
		i = skipValue(raw, v)
		if keyIs(key, name) {
			if found.present() {
				return span{}
			}
			found = span{v, i}
		}
		if i = skipSpace(raw, i); raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return found
}

// hasMember reports whether the object at obj has n or more members named
// name.
func hasMember(raw []byte, obj span, name string, n int) bool {
	i := skipSpace(raw, obj.start+1)
	for raw[i] == '"' {
		k := i
		i = skipString(raw, i)
		if keyIs(raw[k:i], name) {
			if n--; n == 0 {
				return true
			}
		}
		i = skipValue(raw, skipSpace(raw, skipSpace(raw, i)+1))
		if i = skipSpace(raw, i); raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return false
}

func isObject(raw []byte, s span) bool { return s.present() && raw[s.start] == '{' }
func isString(raw []byte, s span) bool { return s.present() && raw[s.start] == '"' }

// stringValue returns the decoded value of the string at s, as the schema
// validator sees it; ok is false if s is absent or not a string. It
// allocates only for strings with escapes or invalid UTF-8 (which
// encoding/json turns into U+FFFD).
func stringValue(raw []byte, s span) (v []byte, ok bool) {
	if !isString(raw, s) {
		return nil, false
	}
	v = raw[s.start+1 : s.end-1]
	if bytes.IndexByte(v, '\\') < 0 && utf8.Valid(v) {
		return v, true
	}
	var str string
	if json.Unmarshal(raw[s.start:s.end], &str) != nil {
		return nil, false // cannot happen: scanTop checked the string
	}
	return []byte(str), true
}

// runesBetween is minLength and maxLength: they count code points.
func runesBetween(v []byte, lo, hi int) bool {
	n := utf8.RuneCount(v)
	return lo <= n && n <= hi
}

// IsEventID reports whether v is a valid eventId, and so webhook-id:
// ^[A-Za-z0-9._:-]{1,128}$. The class is ASCII, so 1 to 128 characters are
// 1 to 128 bytes.
func IsEventID[T string | []byte](v T) bool {
	if len(v) < 1 || len(v) > 128 {
		return false
	}
	for i := range len(v) {
		if c := v[i]; !isAlnum(c) && c != '.' && c != '_' && c != ':' && c != '-' {
			return false
		}
	}
	return true
}

// IsTenantID reports whether v is a valid imsOrg or sandbox id
// ($defs/tenantId): ^[A-Za-z0-9@._-]{1,128}$. Such ids hold no glob, path
// or control characters.
func IsTenantID[T string | []byte](v T) bool {
	if len(v) < 1 || len(v) > 128 {
		return false
	}
	for i := range len(v) {
		if c := v[i]; !isAlnum(c) && c != '@' && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// maxDepth is how deeply encoding/json lets arrays and objects nest.
const maxDepth = 10000

// scanner checks JSON syntax without recursion. objects has bit d set
// while the container open at depth d is an object.
type scanner struct {
	objects [maxDepth/64 + 1]uint64
}

func (sc *scanner) open(depth int, object bool) {
	w, bit := depth/64, uint64(1)<<(depth%64)
	if object {
		sc.objects[w] |= bit
	} else {
		sc.objects[w] &^= bit
	}
}

func (sc *scanner) inObject(depth int) bool {
	return sc.objects[depth/64]&(uint64(1)<<(depth%64)) != 0
}

// value checks the JSON value starting at b[i], inside depth open
// containers, as encoding/json would, and returns the index just past it,
// or -1 if it is not valid.
func (sc *scanner) value(b []byte, i, depth int) int {
	base := depth
	for {
		// A value starts at b[i].
		if i >= len(b) {
			return -1
		}
		switch c := b[i]; {
		case c == '{' || c == '[':
			if depth++; depth > maxDepth {
				return -1
			}
			sc.open(depth, c == '{')
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == c+2 { // '}' or ']'
				i++
				depth--
				break
			}
			if c == '{' {
				if i = memberValue(b, i); i < 0 {
					return -1
				}
			}
			continue
		case c == '"':
			i = scanString(b, i)
		case c == '-' || '0' <= c && c <= '9':
			i = scanNumber(b, i)
		case c == 't':
			i = scanLiteral(b, i, "true")
		case c == 'f':
			i = scanLiteral(b, i, "false")
		case c == 'n':
			i = scanLiteral(b, i, "null")
		default:
			return -1
		}
		if i < 0 {
			return -1
		}
		// After a value: close containers until the next value starts.
		for {
			if depth == base {
				return i
			}
			if i = skipSpace(b, i); i >= len(b) {
				return -1
			}
			object := sc.inObject(depth)
			if b[i] == ',' {
				i = skipSpace(b, i+1)
				if object {
					if i = memberValue(b, i); i < 0 {
						return -1
					}
				}
				break
			}
			if object && b[i] != '}' || !object && b[i] != ']' {
				return -1
			}
			i++
			depth--
		}
	}
}

// memberValue checks a member name and colon at b[i] and returns where the
// value starts, or -1.
func memberValue(b []byte, i int) int {
	if i = scanString(b, i); i < 0 {
		return -1
	}
	if i = skipSpace(b, i); i >= len(b) || b[i] != ':' {
		return -1
	}
	return skipSpace(b, i+1)
}

// scanString checks the string starting at b[i] and returns the index just
// past it, or -1. Like encoding/json it accepts any byte but '"', '\\' and
// control characters, valid UTF-8 or not.
func scanString(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	for i++; i < len(b); i++ {
		if i = skipPlain(b, i); i >= len(b) {
			break
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			if i++; i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					return -1
				}
				i += 4
			default:
				return -1
			}
		case c < 0x20:
			return -1
		}
	}
	return -1
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// scanNumber checks the number starting at b[i] and returns the index just
// past it, or -1: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digits(b, i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		if i++; i >= len(b) || !isDigit(b[i]) {
			return -1
		}
		i = digits(b, i)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		if i++; i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return -1
		}
		i = digits(b, i)
	}
	return i
}

func digits(b []byte, i int) int {
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return i
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func scanLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}
