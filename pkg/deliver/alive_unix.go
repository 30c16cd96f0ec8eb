//go:build unix

package deliver

import (
	"syscall"
	"time"
)

// alive reports whether an idle connection can carry another request: the
// endpoint has neither closed it nor sent anything since its last answer.
// It peeks at the socket without waiting.
func (c *conn) alive() bool {
	if c.raw == nil {
		sc, ok := c.tcp.(syscall.Conn)
		if !ok {
			return false
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return false
		}
		c.raw, c.peekFunc = rc, c.peek
	}
	// The last exchange's deadline may have passed while the connection
	// was idle; the read below would fail on it at once.
	_ = c.tcp.SetReadDeadline(time.Time{})
	c.peeked = false
	return c.raw.Read(c.peekFunc) == nil && c.peeked
}

// peek is alive's look at the socket: peeked is set when there is nothing
// to read, not even an end of file.
func (c *conn) peek(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	c.peeked = err == syscall.EAGAIN
	return true
}
