// Command nulls3 is an S3 endpoint that keeps no data, for measuring S3
// clients (BenchmarkRunnerTransfer) rather than a server.
//
// Against a real bucket the client's machine does the client's work only:
// S3 receives parts on machines of its own, in parallel. An emulator on the
// same two cores does not: kumo and gofakes3 read, hash and copy every body
// they receive, and a client's upload then measures the server's share of
// the cores (and its garbage collector) as much as the client. nulls3 does
// as little as an HTTP server can: it reads each body into one reused
// buffer and drops it, records sizes only, and serves an object's bytes
// from one repeated block. What it answers is just enough for a multipart
// upload, a ranged download and the checks around them:
//
//	PUT    /bucket                         CreateBucket
//	PUT    /bucket/key                     PutObject
//	POST   /bucket/key?uploads             CreateMultipartUpload
//	PUT    /bucket/key?partNumber&uploadId UploadPart
//	POST   /bucket/key?uploadId            CompleteMultipartUpload (If-None-Match: * honoured)
//	HEAD   /bucket/key                     HeadObject
//	GET    /bucket/key                     GetObject, with or without one Range
//	DELETE /bucket/key                     DeleteObject
//
// It checks no signature (the clients still sign every request and hash
// every payload, as they do for S3) and serves path-style addresses only.
// Usage: nulls3 ADDRESS (for example 127.0.0.1:0; the address it listens
// on is printed as its first line of output).
package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
)

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: nulls3 ADDRESS")
	}
	l, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(l.Addr().String())
	log.Fatal(http.Serve(l, newServer()))
}

// blockSize is the length of the block every object's bytes repeat.
const blockSize = 1 << 20

// server holds the size of each object and of each part of each upload.
type server struct {
	block []byte    // an object's bytes: this block, repeated
	bufs  sync.Pool // *[]byte: bodies are read into these and dropped

	mu      sync.Mutex
	objects map[string]int64           // "bucket/key" -> size
	uploads map[string]map[int64]int64 // upload ID -> part number -> size
	nextID  int
}

func newServer() *server {
	s := &server{block: make([]byte, blockSize), objects: map[string]int64{}, uploads: map[string]map[int64]int64{}}
	_, _ = rand.Read(s.block) // bytes that do not compress, as the benchmark's own
	s.bufs.New = func() any { b := make([]byte, 256<<10); return &b }
	return s
}

// drain reads the request's body to its end and returns its length.
func (s *server) drain(r io.Reader) (int64, error) {
	buf := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(buf)
	// Both sides wrapped: io.Discard's own ReadFrom would read 8 KiB at a
	// time, a system call each.
	return io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{r}, *buf)
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/")
	bucket, key, _ := strings.Cut(path, "/")
	q := r.URL.Query()
	if bucket == "" {
		s.fail(w, http.StatusNotImplemented, "NotImplemented")
		return
	}
	switch {
	case key == "" && r.Method == http.MethodPut: // CreateBucket
		_, _ = s.drain(r.Body)
	case r.Method == http.MethodPost && q.Has("uploads"):
		s.mu.Lock()
		s.nextID++
		id := strconv.Itoa(s.nextID)
		s.uploads[id] = map[int64]int64{}
		s.mu.Unlock()
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+
			`<InitiateMultipartUploadResult><Bucket>%s</Bucket><Key>%s</Key><UploadId>%s</UploadId></InitiateMultipartUploadResult>`,
			bucket, key, id)
	case r.Method == http.MethodPut && q.Has("uploadId"):
		s.uploadPart(w, r, q.Get("uploadId"), q.Get("partNumber"))
	case r.Method == http.MethodPost && q.Has("uploadId"):
		s.complete(w, r, bucket+"/"+key, q.Get("uploadId"))
	case r.Method == http.MethodPut:
		n, err := s.drain(r.Body)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.objects[bucket+"/"+key] = n
		s.mu.Unlock()
		w.Header().Set("ETag", etag(n))
	case r.Method == http.MethodHead || r.Method == http.MethodGet:
		s.get(w, r, bucket+"/"+key)
	case r.Method == http.MethodDelete:
		s.mu.Lock()
		delete(s.objects, bucket+"/"+key)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		s.fail(w, http.StatusNotImplemented, "NotImplemented")
	}
}

func (s *server) uploadPart(w http.ResponseWriter, r *http.Request, id, partNumber string) {
	part, err := strconv.ParseInt(partNumber, 10, 64)
	if err != nil || part < 1 {
		s.fail(w, http.StatusBadRequest, "InvalidArgument")
		return
	}
	n, err := s.drain(r.Body)
	if err != nil {
		return
	}
	s.mu.Lock()
	parts, ok := s.uploads[id]
	if ok {
		parts[part] = n
	}
	s.mu.Unlock()
	if !ok {
		s.fail(w, http.StatusNotFound, "NoSuchUpload")
		return
	}
	w.Header().Set("ETag", etag(n))
}

// complete joins an upload's parts into the object key, unless the request
// says If-None-Match: * and the object exists, as S3's conditional writes
// do (the runner writes each result once that way).
func (s *server) complete(w http.ResponseWriter, r *http.Request, key, id string) {
	if _, err := s.drain(r.Body); err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	parts, ok := s.uploads[id]
	if !ok {
		s.fail(w, http.StatusNotFound, "NoSuchUpload")
		return
	}
	if _, exists := s.objects[key]; exists && r.Header.Get("If-None-Match") == "*" {
		s.fail(w, http.StatusPreconditionFailed, "PreconditionFailed")
		return
	}
	var size int64
	for _, n := range parts {
		size += n
	}
	delete(s.uploads, id)
	s.objects[key] = size
	bucket, k, _ := strings.Cut(key, "/")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+
		`<CompleteMultipartUploadResult><Bucket>%s</Bucket><Key>%s</Key><ETag>%s</ETag></CompleteMultipartUploadResult>`,
		bucket, k, etag(size))
}

// get answers HeadObject and GetObject, whole or for one byte range
// ("bytes=FIRST-LAST", "bytes=FIRST-" or "bytes=-SUFFIX").
func (s *server) get(w http.ResponseWriter, r *http.Request, key string) {
	s.mu.Lock()
	size, ok := s.objects[key]
	s.mu.Unlock()
	if !ok {
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		s.fail(w, http.StatusNotFound, "NoSuchKey")
		return
	}
	h := w.Header()
	h.Set("ETag", etag(size))
	h.Set("Last-Modified", "Sun, 06 Dec 2026 00:00:00 GMT")
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Type", "application/octet-stream")
	first, last := int64(0), size-1
	status := http.StatusOK
	if spec := r.Header.Get("Range"); spec != "" {
		var ok bool
		if first, last, ok = parseRange(spec, size); !ok {
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			s.fail(w, http.StatusRequestedRangeNotSatisfiable, "InvalidRange")
			return
		}
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, size))
		status = http.StatusPartialContent
	}
	h.Set("Content-Length", strconv.FormatInt(last-first+1, 10))
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	for off := first; off <= last; {
		chunk := s.block[off%blockSize:]
		if n := last - off + 1; n < int64(len(chunk)) {
			chunk = chunk[:n]
		}
		if _, err := w.Write(chunk); err != nil {
			return
		}
		off += int64(len(chunk))
	}
}

// parseRange reads one HTTP byte range of an object of size bytes
// (RFC 9110, section 14.1.2).
func parseRange(spec string, size int64) (first, last int64, ok bool) {
	r, found := strings.CutPrefix(spec, "bytes=")
	if !found || strings.Contains(r, ",") {
		return 0, 0, false
	}
	a, b, found := strings.Cut(r, "-")
	if !found {
		return 0, 0, false
	}
	if a == "" { // the last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 || size == 0 {
			return 0, 0, false
		}
		return max(size-n, 0), size - 1, true
	}
	first, err := strconv.ParseInt(a, 10, 64)
	if err != nil || first < 0 || first >= size {
		return 0, 0, false
	}
	last = size - 1
	if b != "" {
		if last, err = strconv.ParseInt(b, 10, 64); err != nil || last < first {
			return 0, 0, false
		}
		last = min(last, size-1)
	}
	return first, last, true
}

// etag is an object's or a part's ETag: the server keeps no bytes to hash,
// so it is made from the size.
func etag(size int64) string { return fmt.Sprintf(`"%032x"`, size) }

func (s *server) fail(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, code)
}
