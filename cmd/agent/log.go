package main

import (
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/lmittmann/tint"
)

// newLogger returns the agent's logger writing to w. format is "text"
// (human-readable, via tint), "json", or "" to choose text when w is a
// terminal and JSON otherwise: people read a terminal, log pipelines (ECS,
// CloudWatch) parse JSON. level is a slog level name; Config.Validate has
// already rejected bad ones, so an unparsable level falls back to info.
func newLogger(w io.Writer, format, level string) *slog.Logger {
	lvl, err := parseLevel(level)
	if err != nil {
		lvl = slog.LevelInfo
	}
	tty := isTerminal(w)
	if format == "" {
		format = "json"
		if tty {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(tint.NewTextHandler(w, &tint.Options{
			Level:      lvl,
			TimeFormat: time.TimeOnly,
			NoColor:    !tty, // no escape codes in files and pipes
		}))
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl}))
}

// isTerminal reports whether w is a character device, which is what a
// terminal looks like to Stat; golang.org/x/term is not worth a dependency
// for this one bit.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
