package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/filekind"
)

// Limits on what sockvisor reads as config, checked before HCL sees a byte.
// HCL's parser recurses once per nesting level and its evaluator once per
// operator in a chain, and a Go stack overflow is fatal, not a panic: 100,000
// "[" (200 KB) took `check` to 1.1 GB and "fatal error: stack overflow", and a
// SIGHUP with such a file killed the daemon. A real sockvisor.hcl nests
// about 4 deep and is a few KB.
const (
	// MaxFileSize is the largest config file sockvisor reads.
	MaxFileSize = 4 << 20
	// MaxNesting bounds brackets, braces, parentheses, blocks, strings,
	// template interpolations and directives, and operators chained in one
	// expression, all counted together.
	MaxNesting = 100
	// MaxTokens bounds the tokens HCL would build, since its tokens and
	// syntax tree cost about 750 bytes per list element: a flat 4 MiB list
	// of 2,000,000 numbers took `check` to 1.5 GB and 15 s. A config with
	// 500 backends has about 30,000.
	MaxTokens = 200_000
)

// limits are the bounds one parse applies; tests and the fuzz target use
// small ones.
type limits struct {
	size, nesting, tokens int
}

var defaultLimits = limits{size: MaxFileSize, nesting: MaxNesting, tokens: MaxTokens}

// readConfigFile reads at most lim.size+1 bytes of the regular file at path.
// It opens with O_NONBLOCK, so a FIFO without a writer never blocks, and
// refuses anything but a regular file (a FIFO, /dev/zero, a directory)
// before reading it.
func readConfigFile(path string, lim limits) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &notRegularError{fmt.Sprintf("config %s is %s, not a regular file; point --config at the config file itself", path, filekind.OfStat(st.Mode))}
	}
	return io.ReadAll(io.LimitReader(f, int64(lim.size)+1))
}

// ErrNotRegular means the config path names a FIFO, device, directory or
// socket, which sockvisor refuses to read.
var ErrNotRegular = errors.New("config: not a regular file")

// notRegularError is the one-sentence message for ErrNotRegular.
type notRegularError struct{ msg string }

func (e *notRegularError) Error() string { return e.msg }
func (e *notRegularError) Unwrap() error { return ErrNotRegular }

// checkLimits refuses src when it is larger than lim.size or nests deeper
// than lim.nesting, with the position where the limit was crossed.
func checkLimits(src []byte, filename string, lim limits) Problems {
	if len(src) > lim.size {
		line, col := lineCol(src, lim.size)
		return Problems{{Pos: fmt.Sprintf("%s:%d:%d", filename, line, col),
			Msg: fmt.Sprintf("the config file is longer than %s, the most sockvisor reads; shorten it", sizeName(lim.size))}}
	}
	off, what := scanLimits(src, lim)
	if what == withinLimits {
		return nil
	}
	line, col := lineCol(src, off)
	msg := fmt.Sprintf("brackets, braces, blocks, strings and operators nest more than %d levels deep here, more than sockvisor parses; flatten this expression", lim.nesting)
	if what == tooManyTokens {
		msg = fmt.Sprintf("the config has more than %d tokens by here, more than sockvisor parses; shorten it", lim.tokens)
	}
	return Problems{{Pos: fmt.Sprintf("%s:%d:%d", filename, line, col), Msg: msg}}
}

func sizeName(n int) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// lineCol is the 1-based line and column (in characters) of byte off.
func lineCol(src []byte, off int) (line, col int) {
	line, col = 1, 1
	for i := 0; i < off && i < len(src); i++ {
		switch {
		case src[i] == '\n':
			line, col = line+1, 1
		case src[i]&0xC0 != 0x80: // not a UTF-8 continuation byte
			col++
		}
	}
	return line, col
}

// Scanner frames for nestingExceeds.
const (
	frameTop     = iota // the file: code, newlines end items
	frameBrace          // { }: a block body or an object; newlines end items
	frameBracket        // [ ] or ( ): code, newlines ignored
	frameInterp         // ${ } or %{ }: code inside a template
	frameString         // "...": a quoted template
	frameHeredoc        // <<EOF ... EOF: a heredoc template
)

type frame struct {
	kind int
	// ops counts what HCL builds into a chain that it parses or evaluates
	// recursively: operators, postfix indexes and nested %{ if }/%{ for }.
	// It restarts at each item (a comma, or a newline in a body or object).
	ops    int
	marker []byte // frameHeredoc: the closing marker
	sol    bool   // frameHeredoc: at the start of a line
}

// What scanLimits found.
const (
	withinLimits = iota
	tooDeep
	tooManyTokens
)

// nestingExceeds reports the offset where src nests deeper than max.
func nestingExceeds(src []byte, max int) (int, bool) {
	off, what := scanLimits(src, limits{nesting: max, tokens: len(src) + 1})
	return off, what == tooDeep
}

// scanLimits scans src the way HCL's lexer splits it (comments, quoted
// strings with escapes, heredocs, template interpolations and directives)
// and reports the offset where the nesting depth first exceeds lim.nesting,
// or where the lim.tokens+1st token starts. Depth is the number of open
// frames plus the operators chained in each. It uses no memory beyond
// lim.nesting frames, so it is safe on any input.
func scanLimits(src []byte, lim limits) (int, int) {
	max := lim.nesting
	tokens := 0
	stack := []frame{{kind: frameTop}}
	depth := 0 // len(stack)-1 + the sum of ops
	top := func() *frame { return &stack[len(stack)-1] }
	push := func(k int) bool {
		stack = append(stack, frame{kind: k})
		depth++
		return depth > max
	}
	pop := func() {
		f := top()
		depth -= 1 + f.ops
		stack = stack[:len(stack)-1]
		// What was just closed is one term of the enclosing expression:
		// x[a][a][a]... is a chain HCL evaluates recursively.
		if k := top().kind; k != frameString && k != frameHeredoc {
			top().ops++
			depth++
		}
	}
	op := func() bool {
		top().ops++
		depth++
		return depth > max
	}
	endItem := func() {
		depth -= top().ops
		top().ops = 0
	}
	for i := 0; i < len(src); {
		c := src[i]
		f := top()
		switch f.kind {
		case frameString:
			if found, deep := stringTemplate(src, &i, &stack, &depth, push); deep {
				return i, tooDeep
			} else if found {
				continue
			}
			switch {
			case c == '\\':
				i += 2
				continue
			case c == '"':
				pop()
			}
			i++
			continue
		case frameHeredoc:
			if f.sol {
				end := bytes.IndexByte(src[i:], '\n')
				if end < 0 {
					end = len(src) - i
				}
				if bytes.Equal(bytes.TrimSpace(src[i:i+end]), f.marker) {
					i += end // the newline after the marker is code
					pop()
					continue
				}
				f.sol = false
			}
			if found, deep := stringTemplate(src, &i, &stack, &depth, push); deep {
				return i, tooDeep
			} else if found {
				continue
			}
			switch {
			case c == '\n':
				f.sol = true
				if tokens++; tokens > lim.tokens {
					return i, tooManyTokens
				}
			}
			i++
			continue
		}

		// Code: the top level, a body or object, brackets, an interpolation.
		// Each pass below starts one token, except over blanks.
		if c != ' ' && c != '\t' && c != '\r' {
			if tokens++; tokens > lim.tokens {
				return i, tooManyTokens
			}
		}
		switch {
		case c == '#' || (c == '/' && i+1 < len(src) && src[i+1] == '/'):
			end := bytes.IndexByte(src[i:], '\n')
			if end < 0 {
				return 0, withinLimits
			}
			i += end // the newline still ends the item
			continue
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := bytes.Index(src[i+2:], []byte("*/"))
			if end < 0 {
				return 0, withinLimits
			}
			i += 2 + end + 2
			continue
		case c == '"':
			if push(frameString) {
				return i, tooDeep
			}
		case c == '<' && i+1 < len(src) && src[i+1] == '<':
			if marker, n := heredocIntro(src[i:]); n > 0 {
				if push(frameHeredoc) {
					return i, tooDeep
				}
				top().marker, top().sol = marker, true
				i += n
				continue
			}
			if op() {
				return i, tooDeep
			}
			i += 2
			continue
		case c == '{':
			if push(frameBrace) {
				return i, tooDeep
			}
		case c == '[' || c == '(':
			if push(frameBracket) {
				return i, tooDeep
			}
		case c == '}' || c == ']' || c == ')':
			if len(stack) > 1 && f.kind != frameTop {
				pop()
			}
		case c == ',':
			endItem()
		case c == '\n':
			if f.kind == frameTop || f.kind == frameBrace {
				endItem()
			}
		case c == '_' || c >= 0x80 || unicode.IsLetter(rune(c)):
			i += identLen(src[i:])
			continue
		case c >= '0' && c <= '9':
			i += numberLen(src[i:])
			continue
		case c == '=' && i+1 < len(src) && src[i+1] == '>':
			i += 2
			continue
		case c == '=' && (i+1 >= len(src) || src[i+1] != '='):
			// Assignment: not an operator. (== falls through below.)
		case bytes.IndexByte([]byte("!-+*/%<>=&|?"), c) >= 0:
			// One operator (a two-character one like && or == counts
			// once: its second byte is skipped).
			if op() {
				return i, tooDeep
			}
			if i+1 < len(src) && bytes.IndexByte([]byte("=&|"), src[i+1]) >= 0 && c != '?' {
				i += 2
				continue
			}
		}
		i++
	}
	return 0, withinLimits
}

// stringTemplate handles src[*i] inside a string or heredoc if it starts a
// template: it skips a literal $${ or %%{, or opens a ${ or %{ sequence
// (templateSeq). found is false when src[*i] starts neither.
func stringTemplate(src []byte, i *int, stack *[]frame, depth *int, push func(int) bool) (found, deep bool) {
	c := src[*i]
	if c != '$' && c != '%' || *i+1 >= len(src) {
		return false, false
	}
	if src[*i+1] == c && *i+2 < len(src) && src[*i+2] == '{' {
		*i += 3 // $${ and %%{ are literal
		return true, false
	}
	if src[*i+1] != '{' {
		return false, false
	}
	return true, templateSeq(src, i, stack, depth, push)
}

// templateSeq opens an interpolation ${ or a directive %{ at src[*i], and
// for %{ if } and %{ for } counts one level of template nesting on the
// enclosing template (%{ endif } and %{ endfor } take it back).
func templateSeq(src []byte, i *int, stack *[]frame, depth *int, push func(int) bool) bool {
	directive := src[*i] == '%'
	tmpl := &(*stack)[len(*stack)-1]
	if directive {
		j := *i + 2
		for j < len(src) && (src[j] == '~' || src[j] == ' ' || src[j] == '\t') {
			j++
		}
		word := src[j : j+identLen(src[j:])]
		switch string(word) {
		case "if", "for":
			tmpl.ops++
			*depth++
		case "endif", "endfor":
			if tmpl.ops > 0 {
				tmpl.ops--
				*depth--
			}
		}
	}
	if push(frameInterp) {
		return true
	}
	*i += 2
	return false
}

// heredocIntro recognises <<ID or <<-ID followed by a newline at the start
// of b, returning the marker and the length of the introducer.
func heredocIntro(b []byte) ([]byte, int) {
	j := 2
	if j < len(b) && b[j] == '-' {
		j++
	}
	r, _ := utf8.DecodeRune(b[j:])
	if !(r == '_' || unicode.IsLetter(r)) {
		return nil, 0
	}
	n := identLen(b[j:])
	marker := b[j : j+n]
	k := j + n
	if k < len(b) && b[k] == '\r' {
		k++
	}
	if k >= len(b) || b[k] != '\n' {
		return nil, 0
	}
	return marker, k + 1
}

// identLen is the length of the identifier at the start of b (letters,
// digits, _ and -, as HCL's Ident), at least 1 so scanning advances.
func identLen(b []byte) int {
	n := 0
	for n < len(b) {
		r, size := utf8.DecodeRune(b[n:])
		if !(r == '_' || r == '-' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Mc, r) || unicode.Is(unicode.Pc, r)) {
			break
		}
		n += size
	}
	return max(n, 1)
}

// numberLen is the length of the number literal at the start of b,
// exponent sign included, so 1e-5 holds no operator.
func numberLen(b []byte) int {
	n := 0
	for n < len(b) {
		c := b[n]
		switch {
		case c >= '0' && c <= '9', c == '.':
		case (c == 'e' || c == 'E') && n+1 < len(b) && (b[n+1] == '+' || b[n+1] == '-'):
			n++
		case c == 'e' || c == 'E':
		default:
			return max(n, 1)
		}
		n++
	}
	return max(n, 1)
}
