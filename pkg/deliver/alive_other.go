//go:build !unix

package deliver

// alive cannot look at the socket here: idle connections are never reused.
func (c *conn) alive() bool { return false }
