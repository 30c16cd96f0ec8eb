package event

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// near is minimal with old replaced by new (once), failing the test that
// builds its table if old is not there, so that no case silently tests
// the unchanged minimal event.
func near(old, new string) string {
	if !strings.Contains(minimal, old) {
		panic("minimal has no " + old)
	}
	return strings.Replace(minimal, old, new, 1)
}

// withMember is minimal with the member name:value added first (or, with
// last, after the others, where it overrides a duplicate).
func withMember(member string, last bool) string {
	if last {
		return minimal[:len(minimal)-1] + "," + member + "}"
	}
	return "{" + member + "," + minimal[1:]
}

func quoted(s string) string { return strconv.Quote(s) }

// fastCases are valid events and near misses, each with the decision the
// schema makes. They seed FuzzParseFastMatchesSchema.
func fastCases() []struct {
	name, raw string
	valid     bool
} {
	type c = struct {
		name, raw string
		valid     bool
	}
	a := strings.Repeat
	cases := []c{}
	for _, ch := range []string{"email", "sms"} {
		for _, st := range []string{StatusSent, StatusDelivered, StatusBounce, StatusError, "opened", "x"} {
			raw := strings.Replace(near(`"sms"`, quoted(ch)), `"value":"sent"`, `"value":`+quoted(st), 1)
			cases = append(cases, c{ch + "/" + st, raw, true})
		}
	}
	cases = append(cases, []c{
		// Top level and syntax.
		{"empty input", ``, false},
		{"only space", " \n", false},
		{"empty object", `{}`, false},
		{"null", `null`, false},
		{"array", `[` + minimal + `]`, false},
		{"string", `"x"`, false},
		{"number", `1`, false},
		{"surrounding space", " \t\r\n" + minimal + " \n", true},
		{"space everywhere", strings.NewReplacer(`:`, " : ", `,`, " ,\n ", `{`, "{ ", `}`, "\t}").Replace(minimal), true},
		{"vertical tab", minimal + "\v", false},
		{"byte order mark", "\ufeff" + minimal, false},
		{"trailing garbage", minimal + `x`, false},
		{"two objects", minimal + minimal, false},
		{"unclosed", minimal[:len(minimal)-1], false},
		{"trailing comma", minimal[:len(minimal)-1] + `,}`, false},
		{"missing comma", near(`,"imsOrg"`, ` "imsOrg"`), false},
		{"missing colon", near(`"imsOrg":`, `"imsOrg" `), false},
		{"single quotes", near(`"sms"`, `'sms'`), false},
		{"comment", withMember(`/*c*/"x":1`, false), false},
		{"unquoted key", withMember(`x:1`, false), false},
		{"numbers", withMember(`"x":[0,-0,1.5,-1.5e10,1E+2,1e-2,123456789012345678901234567890,1e999999]`, false), true},
		{"leading zero", withMember(`"x":01`, false), false},
		{"lone minus", withMember(`"x":-`, false), false},
		{"dot without digits", withMember(`"x":1.`, false), false},
		{"leading dot", withMember(`"x":.5`, false), false},
		{"plus sign", withMember(`"x":+1`, false), false},
		{"exponent without digits", withMember(`"x":1e+`, false), false},
		{"NaN", withMember(`"x":NaN`, false), false},
		{"literals", withMember(`"x":[true,false,null,{"a":[]},[],{}]`, false), true},
		{"short literal", withMember(`"x":tru`, false), false},
		{"long literal", withMember(`"x":nulls`, false), false},
		{"capital literal", withMember(`"x":True`, false), false},
		{"unclosed array", withMember(`"x":[1,2`, false), false},
		{"mismatched brackets", withMember(`"x":[1}`, false), false},
		{"array trailing comma", withMember(`"x":[1,]`, false), false},
		{"object trailing comma", withMember(`"x":{"a":1,}`, false), false},
		{"nested missing colon", withMember(`"x":{"a" 1}`, false), false},
		{"escapes", withMember(`"x":"\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00"`, false), true},
		{"bad escape", withMember(`"x":"\q"`, false), false},
		{"short unicode escape", withMember(`"x":"\u12"`, false), false},
		{"bad hex", withMember(`"x":"\u12G4"`, false), false},
		{"raw tab in string", withMember("\"x\":\"a\tb\"", false), false},
		{"raw newline in key", withMember("\"x\n\":1", false), false},
		{"DEL in string", withMember("\"x\":\"a\x7fb\"", false), true},
		{"invalid UTF-8 in unknown field", withMember("\"x\":\"\xff\xfe\"", false), true},
		{"depth 10000", withMember(`"x":`+a("[", 9999)+a("]", 9999), false), true},
		{"depth 10001", withMember(`"x":`+a("[", 10000)+a("]", 10000), false), false},
		{"objects depth 10001", withMember(`"x":`+a(`{"a":`, 10000)+"1"+a("}", 10000), false), false},
		{"nul byte", minimal + "\x00", false},

		// Member names: decoded, exact case; a routed member given twice is
		// refused (receivers may read another copy than feedbackd routed on).
		{"escaped name", near(`"imsOrg"`, `"ims\u004frg"`), true},
		{"escaped nested name", near(`{"id":"sb1"}`, `{"\u0069d":"sb1"}`), true},
		{"name in other case", near(`"imsOrg"`, `"imsorg"`), false},
		{"nested name in other case", near(`"campaignID"`, `"campaignId"`), false},
		{"bad duplicate first", withMember(`"imsOrg":"a/b"`, false), false},
		{"good duplicate", withMember(`"imsOrg":"org2"`, true), false},
		{"escaped duplicate", withMember(`"ims\u004frg":"org1"`, true), false},
		{"duplicate eventId", near(`"requestId":"r1",`, `"eventId":"e1","requestId":"r1","eventId":"e2",`), false},
		{"duplicate of an unrouted member", near(`"requestId":"r1",`, `"requestId":"r1","x":1,"x":2,`), true},
		{"bad duplicate last", withMember(`"imsOrg":"a/b"`, true), false},
		{"missing duplicate", withMember(`"sandbox":{}`, true), false},
		{"nested duplicates", near(`{"id":"sb1"}`, `{"id":"a/b","name":1,"id":"sb1","name":"n"}`), false},
		{"nested duplicate name", near(`{"id":"sb1"}`, `{"id":"sb1","name":"a","name":"b"}`), false},
		{"deep duplicate", near(`{"value":"sent"}`, `{"value":"sent","value":"bounce"}`), false},
		{"duplicate inside an unrouted member", near(`"requestId":"r1",`, `"requestId":"r1","x":{"imsOrg":1,"imsOrg":2},`), true},
		{"nested bad duplicate last", near(`{"id":"sb1"}`, `{"id":"sb1","id":null}`), false},
		{"invalid UTF-8 name", withMember("\"imsOrg\xff\":1", false), true},

		// Required members.
		{"no requestId", near(`"requestId":"r1",`, ``), false},
		{"no imsOrg", near(`"imsOrg":"org1",`, ``), false},
		{"no sandbox", near(`"sandbox":{"id":"sb1"},`, ``), false},
		{"no sandbox.id", near(`{"id":"sb1"}`, `{"name":"n"}`), false},
		{"no channel", near(`"channel":"sms",`, ``), false},
		{"no messageExecution", near(`"messageExecution":{"campaignID":"c1"},`, ``), false},
		{"no campaignID", near(`{"campaignID":"c1"}`, `{"x":"c1"}`), false},
		{"no messageDeliveryFeedback", near(`,"messageDeliveryFeedback":{"feedbackStatus":{"value":"sent"}}`, ``), false},
		{"no feedbackStatus", near(`{"feedbackStatus":{"value":"sent"}}`, `{}`), false},
		{"no value", near(`{"value":"sent"}`, `{"Value":"sent"}`), false},

		// requestId: a string of 1 to 256 code points.
		{"requestId empty", near(`"r1"`, `""`), false},
		{"requestId 256", near(`"r1"`, quoted(a("r", 256))), true},
		{"requestId 257", near(`"r1"`, quoted(a("r", 257))), false},
		{"requestId 256 runes", near(`"r1"`, `"`+a("é", 256)+`"`), true},
		{"requestId 257 runes", near(`"r1"`, `"`+a("é", 257)+`"`), false},
		{"requestId escaped runes", near(`"r1"`, `"`+a(`\u00e9`, 256)+`"`), true},
		{"requestId invalid UTF-8", near(`"r1"`, "\"a\xffb\xc3\""), true},
		{"requestId 256 invalid bytes", near(`"r1"`, `"`+a("\xff", 256)+`"`), true},
		{"requestId 257 invalid bytes", near(`"r1"`, `"`+a("\xff", 257)+`"`), false},
		{"requestId lone surrogate", near(`"r1"`, `"\ud800"`), true},
		{"requestId surrogate pair", near(`"r1"`, `"\ud83d\ude00"`), true},
		{"requestId escaped quote", near(`"r1"`, `"a\"b"`), true},
		{"requestId NUL escape", near(`"r1"`, `"\u0000"`), true},
		{"requestId space", near(`"r1"`, `" "`), true},
		{"requestId number", near(`"r1"`, `1`), false},
		{"requestId null", near(`"r1"`, `null`), false},
		{"requestId bool", near(`"r1"`, `true`), false},
		{"requestId array", near(`"r1"`, `["r1"]`), false},
		{"requestId object", near(`"r1"`, `{}`), false},

		// imsOrg and sandbox.id: ^[A-Za-z0-9@._-]{1,128}$.
		{"org all classes", near(`"org1"`, `"aZ09@._-"`), true},
		{"org empty", near(`"org1"`, `""`), false},
		{"org 128", near(`"org1"`, quoted(a("o", 128))), true},
		{"org 129", near(`"org1"`, quoted(a("o", 129))), false},
		{"org slash", near(`"org1"`, `"a/b"`), false},
		{"org space", near(`"org1"`, `"a b"`), false},
		{"org colon", near(`"org1"`, `"a:b"`), false},
		{"org trailing newline", near(`"org1"`, `"a\n"`), false},
		{"org escaped letter", near(`"org1"`, `"\u0041bc"`), true},
		{"org non-ASCII", near(`"org1"`, `"é"`), false},
		{"org invalid UTF-8", near(`"org1"`, "\"a\xff\""), false},
		{"org number", near(`"org1"`, `1`), false},
		{"org null", near(`"org1"`, `null`), false},
		{"sandbox id slash", near(`"sb1"`, `"a/b"`), false},
		{"sandbox id 128", near(`"sb1"`, quoted(a("s", 128))), true},
		{"sandbox id 129", near(`"sb1"`, quoted(a("s", 129))), false},
		{"sandbox id number", near(`"sb1"`, `7`), false},
		{"sandbox empty", near(`{"id":"sb1"}`, `{}`), false},
		{"sandbox array", near(`{"id":"sb1"}`, `[]`), false},
		{"sandbox string", near(`{"id":"sb1"}`, `"sb1"`), false},
		{"sandbox null", near(`{"id":"sb1"}`, `null`), false},
		{"sandbox name", near(`{"id":"sb1"}`, `{"id":"sb1","name":"n"}`), true},
		{"sandbox empty name", near(`{"id":"sb1"}`, `{"id":"sb1","name":""}`), true},
		{"sandbox name number", near(`{"id":"sb1"}`, `{"id":"sb1","name":1}`), false},
		{"sandbox name null", near(`{"id":"sb1"}`, `{"name":null,"id":"sb1"}`), false},
		{"sandbox other members", near(`{"id":"sb1"}`, `{"x":{"id":1},"id":"sb1","y":[]}`), true},

		// channel: "email" or "sms".
		{"channel escaped", near(`"sms"`, `"\u0065mail"`), true},
		{"channel capital", near(`"sms"`, `"SMS"`), false},
		{"channel push", near(`"sms"`, `"push"`), false},
		{"channel padded", near(`"sms"`, `"sms "`), false},
		{"channel empty", near(`"sms"`, `""`), false},
		{"channel null", near(`"sms"`, `null`), false},
		{"channel array", near(`"sms"`, `["sms"]`), false},

		// eventType: null or a string of 1 to 128 code points.
		{"eventType null", withMember(`"eventType":null`, false), true},
		{"eventType", withMember(`"eventType":"t"`, false), true},
		{"eventType empty", withMember(`"eventType":""`, false), false},
		{"eventType 128", withMember(`"eventType":`+quoted(a("t", 128)), false), true},
		{"eventType 129", withMember(`"eventType":`+quoted(a("t", 129)), false), false},
		{"eventType 128 runes", withMember(`"eventType":"`+a("€", 128)+`"`, false), true},
		{"eventType number", withMember(`"eventType":1`, false), false},
		{"eventType false", withMember(`"eventType":false`, false), false},
		{"eventType object", withMember(`"eventType":{}`, false), false},
		{"eventType null then bad", withMember(`"eventType":""`, true), false},

		// eventId: ^[A-Za-z0-9._:-]{1,128}$.
		{"eventId", withMember(`"eventId":"aZ09._:-"`, false), true},
		{"eventId empty", withMember(`"eventId":""`, false), false},
		{"eventId 128", withMember(`"eventId":`+quoted(a("e", 128)), false), true},
		{"eventId 129", withMember(`"eventId":`+quoted(a("e", 129)), false), false},
		{"eventId at", withMember(`"eventId":"a@b"`, false), false},
		{"eventId slash", withMember(`"eventId":"a/b"`, false), false},
		{"eventId newline", withMember(`"eventId":"a\nb"`, false), false},
		{"eventId escaped", withMember(`"eventId":"\u0041:1"`, false), true},
		{"eventId null", withMember(`"eventId":null`, false), false},
		{"eventId number", withMember(`"eventId":1`, false), false},

		// messageExecution.campaignID: a string of 1 to 128 code points.
		{"campaign empty", near(`"c1"`, `""`), false},
		{"campaign 128", near(`"c1"`, quoted(a("c", 128))), true},
		{"campaign 129", near(`"c1"`, quoted(a("c", 129))), false},
		{"campaign 128 runes", near(`"c1"`, `"`+a("ü", 128)+`"`), true},
		{"campaign 129 runes", near(`"c1"`, `"`+a("ü", 129)+`"`), false},
		{"campaign any characters", near(`"c1"`, `"a/b c\n"`), true},
		{"campaign number", near(`"c1"`, `1`), false},
		{"campaign null", near(`"c1"`, `null`), false},
		{"messageExecution array", near(`{"campaignID":"c1"}`, `[]`), false},
		{"messageExecution null", near(`{"campaignID":"c1"}`, `null`), false},
		{"messageExecution more", near(`{"campaignID":"c1"}`, `{"messageType":"t","campaignID":"c1","x":null}`), true},

		// messageDeliveryFeedback.feedbackStatus.value: 1 to 64 code points.
		{"status empty", near(`"value":"sent"`, `"value":""`), false},
		{"status 64", near(`"value":"sent"`, `"value":`+quoted(a("s", 64))), true},
		{"status 65", near(`"value":"sent"`, `"value":`+quoted(a("s", 65))), false},
		{"status 64 runes", near(`"value":"sent"`, `"value":"`+a("ß", 64)+`"`), true},
		{"status 65 runes", near(`"value":"sent"`, `"value":"`+a("ß", 65)+`"`), false},
		{"status escaped", near(`"value":"sent"`, `"value":"s\u0065nt"`), true},
		{"status number", near(`"value":"sent"`, `"value":3`), false},
		{"status null", near(`"value":"sent"`, `"value":null`), false},
		{"feedbackStatus string", near(`{"value":"sent"}`, `"sent"`), false},
		{"feedbackStatus null", near(`{"value":"sent"}`, `null`), false},
		{"feedbackStatus array", near(`{"value":"sent"}`, `[{"value":"sent"}]`), false},
		{"messageDeliveryFeedback array", near(`{"feedbackStatus":{"value":"sent"}}`, `[]`), false},
		{"messageDeliveryFeedback more", near(`{"feedbackStatus":{"value":"sent"}}`, `{"offers":null,"feedbackStatus":{"x":1,"value":"sent"},"retryCount":0}`), true},
	}...)
	return cases
}

// checkFastMatchesSchema fails t unless the fast path makes the schema
// validator's decision on raw, with the same fields, and Parse returns
// exactly what the validator alone would.
func checkFastMatchesSchema(t *testing.T, raw []byte) (valid bool) {
	t.Helper()
	want, wantErr := parseSchema(raw)
	if wantErr != nil {
		var ie *InvalidError
		if !errors.As(wantErr, &ie) {
			t.Fatalf("schema path error is not *InvalidError: %v", wantErr)
		}
	}
	if len(raw) <= MaxSize { // Parse checks the size before the fast path
		got, ok := parseFast(raw)
		if ok != (wantErr == nil) {
			t.Fatalf("fast path accepts=%v, schema validator says %v, for %q", ok, wantErr, raw)
		}
		if ok && !reflect.DeepEqual(got, want) {
			t.Fatalf("fast path parsed %q as\n%+v\nschema path:\n%+v", raw, *got, *want)
		}
	}
	got, err := Parse(raw)
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(err, wantErr) {
		t.Fatalf("Parse(%q) = %+v, %v; schema path: %+v, %v", raw, got, err, want, wantErr)
	}
	if err != nil && err.(*InvalidError).Class() != wantErr.(*InvalidError).Class() {
		t.Fatalf("Parse(%q) error class %q, schema path %q", raw, err.(*InvalidError).Class(), wantErr.(*InvalidError).Class())
	}
	return wantErr == nil
}

func TestParseFastMatchesSchema(t *testing.T) {
	for _, tc := range fastCases() {
		t.Run(tc.name, func(t *testing.T) {
			if valid := checkFastMatchesSchema(t, []byte(tc.raw)); valid != tc.valid {
				t.Fatalf("schema validator says valid=%v, the case expects %v", valid, tc.valid)
			}
		})
	}
	seed, err := os.ReadFile("testdata/seed-bounce.json")
	if err != nil {
		t.Fatal(err)
	}
	checkFastMatchesSchema(t, seed)
}

func TestParseFastAllocations(t *testing.T) {
	raw, err := os.ReadFile("testdata/seed-bounce.json")
	if err != nil {
		t.Fatal(err)
	}
	// The Event and one string for its fields.
	if n := testing.AllocsPerRun(100, func() { _, _ = Parse(raw) }); n > 2 {
		t.Fatalf("Parse of a valid event allocates %v times, want at most 2", n)
	}
}

// FuzzParseFastMatchesSchema checks, for any input, that the hand-written
// fast path of Parse accepts exactly what the JSON Schema validator
// accepts, with the same fields, and that Parse's errors are the
// validator's.
func FuzzParseFastMatchesSchema(f *testing.F) {
	for _, tc := range fastCases() {
		f.Add([]byte(tc.raw))
	}
	files, _ := filepath.Glob("testdata/*.json")
	corpus, _ := filepath.Glob("testdata/fuzz/FuzzParseAndBody/*")
	for _, name := range append(files, corpus...) {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		if v, ok := corpusBytes(b); ok {
			b = v
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkFastMatchesSchema(t, raw)
	})
}

// corpusBytes returns the []byte value of a "go test fuzz v1" corpus file.
func corpusBytes(file []byte) ([]byte, bool) {
	header, rest, ok := bytes.Cut(file, []byte("\n"))
	if !ok || string(header) != "go test fuzz v1" {
		return nil, false
	}
	lit, ok := strings.CutPrefix(strings.TrimSpace(string(rest)), "[]byte(")
	if !ok || !strings.HasSuffix(lit, ")") {
		return nil, false
	}
	s, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
	if err != nil {
		return nil, false
	}
	return []byte(s), true
}

// plain8 finds the first byte that ends a string or needs a look of its own
// in one, whatever follows it (the word tests borrow into later bytes).
func TestPlain8(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"abcdefgh", 8},
		{`"bcdefgh`, 0},
		{`abc"efgh`, 3},
		{`abcdefg\`, 7},
		{"abc\x1fefgh", 3},
		{"abc\x00\"\x00\\\x01", 3},
		{"\x7f\x80\xff\x20!#[]", 8}, // DEL, non-ASCII, space and '"'/'\\' neighbours are plain
		{"\xe2\x80\xa8\x21\x5b\x5d\x22\x00", 6},
	} {
		if got := plain8([]byte(tc.in)); got != tc.want {
			t.Errorf("plain8(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
