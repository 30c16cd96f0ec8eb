//go:build !unix

package deliver

// alive cannot look at the socket here: an idle connection kept past
// transport.checkIdle is not reused.
func (c *conn) alive() bool { return false }
