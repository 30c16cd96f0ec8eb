package deliver

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedbackd/feedbackd/pkg/netguard"
	"github.com/feedbackd/feedbackd/test/testenv"
)

// holdEnv makes the test binary a holding receiver (see holdReceiver)
// instead of running tests.
const holdEnv = "FEEDBACKD_DELIVER_HOLD_RECEIVER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(holdEnv); mode != "" {
		holdReceiver(mode == "tls")
		return
	}
	os.Exit(m.Run())
}

// holdReceiver serves HTTP (or HTTPS, with net/http/httptest's fixed test
// certificate) on loopback in a process of its own, so that its memory is
// not the measured one. It prints its URL, then a byte on stdout for
// every request it has read, and answers 200 to the requests it holds
// each time a byte arrives on stdin. It ends when stdin closes.
func holdReceiver(useTLS bool) {
	var mu sync.Mutex
	release := make(chan struct{})
	arrived := make(chan struct{}, 1<<16)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		wait := release
		mu.Unlock()
		arrived <- struct{}{}
		<-wait
	}))
	if useTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, srv.URL)
	out.Flush()
	go func() {
		for range arrived {
			_, _ = out.Write([]byte{'.'})
			if len(arrived) == 0 {
				out.Flush()
			}
		}
	}()
	in := bufio.NewReader(os.Stdin)
	for {
		if _, err := in.ReadByte(); err != nil {
			return
		}
		mu.Lock()
		close(release)
		release = make(chan struct{})
		mu.Unlock()
	}
}

// BenchmarkInFlight measures what a delivery costs while it waits for a
// slow endpoint's answer (B/in-flight: live heap and goroutine stacks of
// this process, per attempt, with the attempt's goroutine) and what a
// connection costs once idle in the pool after it (B/idle-conn). The
// receiver (holdReceiver) runs in a process of its own and holds every
// request until all n have arrived. One iteration is n attempts.
func BenchmarkInFlight(b *testing.B) {
	for _, scheme := range []string{"http", "https"} {
		b.Run(scheme, func(b *testing.B) {
			const n = 2048
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), holdEnv+"="+map[string]string{"http": "plain", "https": "tls"}[scheme])
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() { stdin.Close(); _ = cmd.Wait() }()
			out := bufio.NewReader(stdout)
			url, err := out.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			url = strings.TrimSpace(url)
			opts := Options{Timeout: time.Minute, Guard: &netguard.Guard{AllowPrivate: true}, UserAgent: "feedbackd/bench", MaxIdleConnsPerHost: n}
			if scheme == "https" {
				// httptest's certificate is the same in every process.
				ts := httptest.NewTLSServer(http.NotFoundHandler())
				opts.TLSConfig = ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
				ts.Close()
				opts.TLSConfig.MinVersion = tls.VersionTLS12
			}
			tg, _ := target(&testing.T{}, url, map[string]string{"X-Tenant": "bench"})
			body := make([]byte, 700)
			var inflight, idle, stack float64
			b.ResetTimer()
			for range b.N {
				c := New(opts) // each round dials n connections afresh
				before, stack0 := testenv.LiveBytes(), testenv.StackBytes()
				var wg sync.WaitGroup
				for range n {
					wg.Go(func() {
						if r := c.Send(context.Background(), tg, "msg_2b6c1f0e9d8a", body); r.Verdict != Delivered {
							b.Errorf("verdict %v class %q", r.Verdict, r.Class)
						}
					})
				}
				for range n {
					if _, err := out.ReadByte(); err != nil {
						b.Fatal(err)
					}
				}
				held, stack1 := testenv.LiveBytes(), testenv.StackBytes()
				_, _ = stdin.Write([]byte{'.'})
				wg.Wait()
				after := testenv.LiveBytes()
				inflight += float64(held-before) / n
				stack += float64(stack1-stack0) / n
				idle += float64(after-before) / n
				c.Close()
			}
			b.ReportMetric(inflight/float64(b.N), "B/in-flight")
			b.ReportMetric(idle/float64(b.N), "B/idle-conn")
			b.ReportMetric(stack/float64(b.N), "stack-B/in-flight") // of B/in-flight
		})
	}
}
