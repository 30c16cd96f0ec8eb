package testenv

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// holdEnv makes a test binary a hold receiver instead of running tests
// (see ServeHoldReceiver).
const holdEnv = "FEEDBACKD_TEST_HOLD_RECEIVER"

// ServeHoldReceiver makes this process a hold receiver, if StartHoldReceiver
// started it as one, and then exits; otherwise it returns at once. A
// package whose benchmarks start one calls it first in its TestMain.
//
// A hold receiver serves HTTP (or HTTPS, with net/http/httptest's fixed
// test certificate) on loopback in a process of its own, so that its
// memory is not the benchmark's: it prints its URL, then a byte on stdout
// for every request it has read, and answers 200 to the requests it holds
// each time a byte arrives on stdin. It ends when stdin closes.
func ServeHoldReceiver() {
	mode := os.Getenv(holdEnv)
	if mode == "" {
		return
	}
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
	if mode == "tls" {
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
			os.Exit(0)
		}
		mu.Lock()
		close(release)
		release = make(chan struct{})
		mu.Unlock()
	}
}

// HoldReceiver is a hold receiver's side in the benchmark (see
// ServeHoldReceiver).
type HoldReceiver struct {
	URL   string
	out   *bufio.Reader
	stdin io.WriteCloser
	tb    testing.TB
}

// StartHoldReceiver starts this test binary again as a hold receiver
// (HTTPS with useTLS: the certificate is httptest's, the same in every
// process), stopped when tb ends.
func StartHoldReceiver(tb testing.TB, useTLS bool) *HoldReceiver {
	tb.Helper()
	cmd := exec.Command(os.Args[0])
	mode := "plain"
	if useTLS {
		mode = "tls"
	}
	cmd.Env = append(os.Environ(), holdEnv+"="+mode)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	out := bufio.NewReader(stdout)
	url, err := out.ReadString('\n')
	if err != nil {
		tb.Fatalf("hold receiver: %v", err)
	}
	return &HoldReceiver{URL: strings.TrimSpace(url), out: out, stdin: stdin, tb: tb}
}

// Arrived waits until n more requests have been read and are held.
func (h *HoldReceiver) Arrived(n int) {
	for range n {
		if _, err := h.out.ReadByte(); err != nil {
			h.tb.Fatalf("hold receiver: %v", err)
		}
	}
}

// Release answers the requests held.
func (h *HoldReceiver) Release() { _, _ = h.stdin.Write([]byte{'.'}) }
