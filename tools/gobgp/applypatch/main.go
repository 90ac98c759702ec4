// Command applypatch applies unified diffs (git diff / diff -u, paths with one leading
// component to strip, as `patch -p1`) to a source tree, strictly: each hunk's old text must
// occur exactly once in its file, or nothing is written and it exits 1. tools/gobgp/build.sh
// uses it so that the image build needs nothing beyond the Go toolchain (the golang image has
// no `patch`).
//
//	go run ./applypatch DIR PATCH...
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

type hunk struct{ old, new []string }

type filePatch struct {
	path  string
	hunks []hunk
}

func parse(text string) ([]filePatch, error) {
	var files []filePatch
	var current *filePatch
	var h *hunk
	scanner := bufio.NewScanner(strings.NewReader(text))
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		switch {
		case strings.HasPrefix(line, "+++ "):
			name := strings.Fields(strings.TrimPrefix(line, "+++ "))[0]
			_, rest, ok := strings.Cut(name, "/")
			if !ok {
				return nil, fmt.Errorf("%q: no leading directory to strip", name)
			}
			files = append(files, filePatch{path: rest})
			current, h = &files[len(files)-1], nil
		case strings.HasPrefix(line, "--- "):
			h = nil
		case strings.HasPrefix(line, "@@"):
			if current == nil {
				return nil, fmt.Errorf("hunk before any +++ line")
			}
			current.hunks = append(current.hunks, hunk{})
			h = &current.hunks[len(current.hunks)-1]
		case h != nil && strings.HasPrefix(line, " "):
			h.old, h.new = append(h.old, line[1:]), append(h.new, line[1:])
		case h != nil && strings.HasPrefix(line, "-"):
			h.old = append(h.old, line[1:])
		case h != nil && strings.HasPrefix(line, "+"):
			h.new = append(h.new, line[1:])
		case h != nil && line == "":
			h.old, h.new = append(h.old, ""), append(h.new, "")
		default:
			h = nil // text around the diff (a description) is ignored
		}
	}
	return files, scanner.Err()
}

func apply(dir, patch string) error {
	text, err := os.ReadFile(patch)
	if err != nil {
		return err
	}
	files, err := parse(string(text))
	if err != nil {
		return fmt.Errorf("%s: %w", patch, err)
	}
	if len(files) == 0 {
		return fmt.Errorf("%s: no file to patch", patch)
	}
	for _, f := range files {
		target := filepath.Join(dir, filepath.FromSlash(f.path))
		content, err := os.ReadFile(target)
		if err != nil {
			return fmt.Errorf("%s: %w", patch, err)
		}
		result := string(content)
		for i, h := range f.hunks {
			old := strings.Join(h.old, "\n") + "\n"
			if n := strings.Count(result, old); n != 1 {
				return fmt.Errorf("%s: %s hunk %d: its old text occurs %d times, not once", patch, f.path, i+1, n)
			}
			result = strings.Replace(result, old, strings.Join(h.new, "\n")+"\n", 1)
		}
		if err := os.WriteFile(target, []byte(result), 0o644); err != nil {
			return err
		}
		fmt.Printf("applypatch: %s -> %s\n", filepath.Base(patch), f.path)
	}
	return nil
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: applypatch DIR PATCH...")
		os.Exit(2)
	}
	for _, patch := range os.Args[2:] {
		if err := apply(os.Args[1], patch); err != nil {
			fmt.Fprintln(os.Stderr, "applypatch:", err)
			os.Exit(1)
		}
	}
}
