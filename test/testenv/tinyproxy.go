package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Tinyproxy is a tinyproxy process of one test, an HTTP proxy on
// loopback.
type Tinyproxy struct {
	Addr string // host:port
	dir  string
	cmd  *exec.Cmd
}

// TinyproxyConfig shapes the proxy.
type TinyproxyConfig struct {
	ConnectPorts []int  // ports CONNECT may reach (none: every port)
	User, Pass   string // BasicAuth: every request must carry them
}

// StartTinyproxy starts tinyproxy in the foreground on a free loopback
// port, allowing clients from 127.0.0.1 only. Without tinyproxy
// installed, the test is skipped, or fails if FEEDBACKD_REQUIRE_TOOLS is
// set (`make test` installs it).
func StartTinyproxy(t testing.TB, cfg TinyproxyConfig) *Tinyproxy {
	t.Helper()
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		if os.Getenv("FEEDBACKD_REQUIRE_TOOLS") != "" {
			t.Fatal("tinyproxy not found; `make deps` installs it (apt-get install tinyproxy)")
		}
		t.Skip("tinyproxy not installed; run `make deps` to install it")
	}
	// Not t.TempDir: tinyproxy started as root runs as nobody, which must
	// reach its log.
	dir, err := os.MkdirTemp("", "fbtinyproxy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	_ = os.Chmod(dir, 0o777)
	port := freePort(t)
	var conf strings.Builder
	fmt.Fprintf(&conf, "Port %d\nListen 127.0.0.1\nTimeout 30\nMaxClients 200\nAllow 127.0.0.1\n", port)
	fmt.Fprintf(&conf, "LogFile %q\nLogLevel Info\nPidFile %q\nDisableViaHeader Yes\n",
		filepath.Join(dir, "tinyproxy.log"), filepath.Join(dir, "tinyproxy.pid"))
	if os.Geteuid() == 0 {
		fmt.Fprintf(&conf, "User nobody\nGroup nogroup\n")
	}
	for _, p := range cfg.ConnectPorts {
		fmt.Fprintf(&conf, "ConnectPort %d\n", p)
	}
	if cfg.User != "" {
		fmt.Fprintf(&conf, "BasicAuth %s %s\n", cfg.User, cfg.Pass)
	}
	path := filepath.Join(dir, "tinyproxy.conf")
	if err := os.WriteFile(path, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Tinyproxy{Addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir}
	p.cmd = exec.Command(bin, "-d", "-c", path)
	p.cmd.Stdout, p.cmd.Stderr = os.Stderr, os.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start tinyproxy: %v", err)
	}
	t.Cleanup(p.Stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", p.Addr)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("tinyproxy did not start: %v\n%s", err, p.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL is the proxy's http:// URL, with user:pass@ if given.
func (p *Tinyproxy) URL(user, pass string) string {
	if user == "" {
		return "http://" + p.Addr
	}
	return "http://" + user + ":" + pass + "@" + p.Addr
}

// Log is what tinyproxy logged so far.
func (p *Tinyproxy) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "tinyproxy.log"))
	return string(b)
}

// Stop kills the proxy; its port then refuses connections.
func (p *Tinyproxy) Stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}
