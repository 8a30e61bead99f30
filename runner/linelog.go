package runner

import (
	"bytes"
	"log/slog"
)

// maxLineBytes splits a very long output line into several log records, so
// a command printing without newlines cannot grow the buffer without bound.
const maxLineBytes = 16 << 10

// lineLogger is an io.Writer that logs each line written to it as one
// record ("algorithm output" with the stream name), so the command's
// output reaches the task's log interleaved with the runner's own records.
// exec writes to it from one goroutine per stream.
type lineLogger struct {
	log    *slog.Logger
	stream string // "stdout" or "stderr"
	buf    []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.buf = append(l.buf, p...)
			for len(l.buf) >= maxLineBytes {
				l.emit(l.buf[:maxLineBytes])
				l.buf = append(l.buf[:0], l.buf[maxLineBytes:]...)
			}
			break
		}
		l.buf = append(l.buf, p[:i]...)
		l.emit(bytes.TrimSuffix(l.buf, []byte("\r")))
		l.buf = l.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

// flush logs a last line that had no newline.
func (l *lineLogger) flush() {
	if len(l.buf) > 0 {
		l.emit(l.buf)
		l.buf = l.buf[:0]
	}
}

func (l *lineLogger) emit(line []byte) {
	l.log.Info("algorithm output", "stream", l.stream, "line", string(line))
}
