package errmark

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

func TestMarkKeepsTextAndChain(t *testing.T) {
	kind := errors.New("pkg: kind")
	cause := &fs.PathError{Op: "open", Path: "/x", Err: fs.ErrNotExist}
	err := Mark(fmt.Errorf("cannot read /x: %w", cause), kind)
	if got, want := err.Error(), "cannot read /x: open /x: file does not exist"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var pe *fs.PathError
	if !errors.Is(err, kind) || !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) || pe != cause {
		t.Errorf("chain of %v lacks the kind or the cause", err)
	}
	if errors.Is(Mark(errors.New("other"), errors.New("pkg: kind")), kind) {
		t.Error("a different sentinel with the same text matched")
	}
	if Mark(nil, kind) != nil {
		t.Error("Mark(nil) is not nil")
	}
}
