// Package osuser renders user and group ids for messages. Invariant: it
// never fails: an id the user or group database does not know is shown as
// its number, so a message can always name the owner of a file.
package osuser

import (
	"os/user"
	"strconv"
)

func lookupUser(uid uint32) (id, name string, ok bool) {
	id = strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return id, u.Username, true
	}
	return id, "", false
}

func lookupGroup(gid uint32) (id, name string, ok bool) {
	id = strconv.FormatUint(uint64(gid), 10)
	if g, err := user.LookupGroupId(id); err == nil {
		return id, g.Name, true
	}
	return id, "", false
}

// UserName is uid's user name ("www-data"), or its number ("33").
func UserName(uid uint32) string { return nameOr(lookupUser(uid)) }

// GroupName is gid's group name, or its number.
func GroupName(gid uint32) string { return nameOr(lookupGroup(gid)) }

// User is uid with its name, "33 (www-data)", or only the number ("12345")
// when it has none.
func User(uid uint32) string { return withName(lookupUser(uid)) }

// Group is gid with its name, "33 (www-data)", or only the number.
func Group(gid uint32) string { return withName(lookupGroup(gid)) }

func nameOr(id, name string, ok bool) string {
	if ok {
		return name
	}
	return id
}

func withName(id, name string, ok bool) string {
	if ok {
		return id + " (" + name + ")"
	}
	return id
}
