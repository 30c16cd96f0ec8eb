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
	sc, ok := c.tcp.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	// The last exchange's deadline may have passed while the connection
	// was idle; the read below would fail on it at once.
	_ = c.tcp.SetReadDeadline(time.Time{})
	alive := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = err == syscall.EAGAIN // nothing to read, not even an end of file
		return true
	})
	return err == nil && alive
}
