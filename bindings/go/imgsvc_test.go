package imgsvc_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	imgsvc "github.com/imgsvc/imgsvc/bindings/go"
)

// registry is host:port of a registry holding the fixtures of
// scripts/fixtures.sh: IMGSVC_TEST_REGISTRY, or one TestMain starts.
var registry string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	registry = os.Getenv("IMGSVC_TEST_REGISTRY")
	if registry == "" {
		dir, err := os.MkdirTemp("", "imgsvc-go-registry-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		out, err := exec.Command("../../scripts/registry.sh", "start", dir).Output()
		if err != nil {
			fmt.Fprintf(os.Stderr, "starting a registry: %v\n", err)
			return 1
		}
		defer exec.Command("../../scripts/registry.sh", "stop", dir).Run()
		registry = strings.TrimSpace(string(out))
		push := exec.Command("../../scripts/fixtures.sh", "push", registry)
		push.Stdout, push.Stderr = os.Stderr, os.Stderr
		if err := push.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "pushing fixtures: %v\n", err)
			return 1
		}
	}
	return m.Run()
}

func ref(path string) string { return registry + "/" + path }

var imageID = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func open(t *testing.T, opts *imgsvc.Options) (*imgsvc.Service, string) {
	t.Helper()
	root := t.TempDir()
	svc, err := imgsvc.Open(root, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc, root
}

func mustPull(t *testing.T, svc *imgsvc.Service, image string) string {
	t.Helper()
	id, err := svc.Pull(context.Background(), image, nil)
	if err != nil {
		t.Fatalf("Pull %s: %v", image, err)
	}
	if !imageID.MatchString(id) {
		t.Fatalf("Pull %s: id %q", image, id)
	}
	return id
}

func assertEmpty(t *testing.T, svc *imgsvc.Service) {
	t.Helper()
	images, err := svc.List("")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(images) != 0 {
		t.Fatalf("store not empty: %+v", images)
	}
}

func TestCloseTwiceAndUseAfterClose(t *testing.T) {
	svc, err := imgsvc.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := svc.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err = svc.List("")
	if !errors.Is(err, imgsvc.ErrClosed) || !errors.Is(err, imgsvc.ErrInvalidArgument) {
		t.Fatalf("List after Close: %v", err)
	}
	if _, err := svc.Pull(context.Background(), ref("fixture/small:a"), nil); !errors.Is(err, imgsvc.ErrClosed) {
		t.Fatalf("Pull after Close: %v", err)
	}
}

func TestOpenOptions(t *testing.T) {
	for _, opts := range []*imgsvc.Options{
		{MaxParallelDownloads: 65},
		{MaxParallelDownloads: -1},
		{ConnectTimeout: -time.Second},
	} {
		if _, err := imgsvc.Open(t.TempDir(), opts); !errors.Is(err, imgsvc.ErrInvalidArgument) {
			t.Errorf("Open(%+v): %v, want ErrInvalidArgument", opts, err)
		}
	}
	if _, err := imgsvc.Open("", nil); !errors.Is(err, imgsvc.ErrInvalidArgument) {
		t.Errorf("Open(\"\"): %v", err)
	}
	svc, _ := open(t, &imgsvc.Options{
		Pinned:               []string{ref("fixture/root") + "*"},
		MaxParallelDownloads: 2,
		ProgressTimeout:      -1,
		ConnectTimeout:       5 * time.Second,
	})
	id := mustPull(t, svc, ref("fixture/root:latest"))
	images, err := svc.List(id)
	if err != nil || len(images) != 1 {
		t.Fatalf("List(%s): %v %v", id, images, err)
	}
	img := images[0]
	if !img.Pinned || img.UID == nil || *img.UID != 0 || img.Username != "" {
		t.Fatalf("root image: %+v", img)
	}
}

func TestPullListStatusFsInfoRemove(t *testing.T) {
	svc, root := open(t, nil)
	image := ref("fixture/debian:v1")
	var events []imgsvc.Progress
	id, err := svc.Pull(context.Background(), image, &imgsvc.PullOptions{
		Progress: func(p imgsvc.Progress) { events = append(events, p) },
	})
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	if !imageID.MatchString(id) {
		t.Fatalf("id %q", id)
	}
	if len(events) < 3 || events[0].Kind != imgsvc.ProgressResolved || events[len(events)-1].Kind != imgsvc.ProgressCommitted {
		t.Fatalf("events: %+v", events)
	}
	if first := events[0]; !strings.HasSuffix(first.Image, "fixture/debian:v1") || first.Layers < 3 || first.Total == 0 {
		t.Fatalf("resolved event: %+v", first)
	}
	if last := events[len(events)-1]; last.Image != id {
		t.Fatalf("committed %q, pulled %q", last.Image, id)
	}
	started, done := 0, 0
	for _, e := range events {
		switch e.Kind {
		case imgsvc.ProgressLayerStarted:
			started++
		case imgsvc.ProgressLayerDone:
			done++
			if e.Done != e.Total || !strings.HasPrefix(e.Digest, "sha256:") {
				t.Errorf("layer done: %+v", e)
			}
		case imgsvc.ProgressBytes:
			if e.Done > e.Total {
				t.Errorf("bytes: %+v", e)
			}
		}
	}
	if started == 0 || started != done {
		t.Fatalf("started %d, done %d", started, done)
	}

	images, err := svc.List("")
	if err != nil || len(images) != 1 {
		t.Fatalf("List: %+v %v", images, err)
	}
	img := images[0]
	if img.ID != id || len(img.RepoTags) != 1 || img.RepoTags[0] != image || len(img.RepoDigests) != 1 ||
		img.Size == 0 || img.UID == nil || *img.UID != 65534 {
		t.Fatalf("image: %+v", img)
	}

	// Short id prefix, as crictl shows it.
	prefix := strings.TrimPrefix(id, "sha256:")[:12]
	st, err := svc.Status(prefix, false)
	if err != nil || st == nil || st.Image.ID != id || st.Info != nil {
		t.Fatalf("Status(%s): %+v %v", prefix, st, err)
	}
	st, err = svc.Status(image, true)
	if err != nil || st == nil || !strings.Contains(st.Info["info"], `"imageSpec"`) {
		t.Fatalf("verbose Status: %+v %v", st, err)
	}

	usage, err := svc.FsInfo()
	if err != nil {
		t.Fatal(err)
	}
	if usage.Mountpoint != root || usage.UsedBytes < img.Size || usage.InodesUsed == 0 ||
		time.Since(usage.Timestamp) > time.Minute {
		t.Fatalf("FsInfo: %+v (image size %d)", usage, img.Size)
	}

	if err := svc.Remove(prefix); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, svc)
	if st, err := svc.Status(id, false); st != nil || err != nil {
		t.Fatalf("Status after remove: %+v %v", st, err)
	}
}

func TestAbsentImage(t *testing.T) {
	svc, _ := open(t, nil)
	for _, name := range []string{ref("fixture/small:a"), "sha256:" + strings.Repeat("ab", 32), "abcdef0123"} {
		st, err := svc.Status(name, true)
		if st != nil || err != nil {
			t.Errorf("Status(%s) = %+v, %v; want nil, nil", name, st, err)
		}
		if err := svc.Remove(name); err != nil {
			t.Errorf("Remove(%s): %v", name, err)
		}
		images, err := svc.List(name)
		if err != nil || len(images) != 0 {
			t.Errorf("List(%s): %+v %v", name, images, err)
		}
	}
}

func TestErrors(t *testing.T) {
	svc, _ := open(t, nil)
	ctx := context.Background()
	cases := []struct {
		name string
		err  error
		want error
		code int
	}{
		{"bad reference", pullErr(svc, ctx, "UPPER/case:tag"), imgsvc.ErrInvalidArgument, 1},
		{"empty reference", pullErr(svc, ctx, ""), imgsvc.ErrInvalidArgument, 1},
		{"NUL byte", pullErr(svc, ctx, "fixture/small:a\x00b"), imgsvc.ErrInvalidArgument, 1},
		{"invalid UTF-8", pullErr(svc, ctx, "fixture/sm\xffall:a"), imgsvc.ErrInvalidArgument, 1},
		{"missing tag", pullErr(svc, ctx, ref("fixture/small:no-such-tag")), imgsvc.ErrNotFound, 2},
		{"missing repository", pullErr(svc, ctx, ref("fixture/no-such-repo:1")), imgsvc.ErrNotFound, 2},
		{"artifact", pullErr(svc, ctx, ref("fixture/artifact:latest")), imgsvc.ErrUnsupported, 7},
		{"no platform", pullErr(svc, ctx, ref("fixture/noplatform:latest")), imgsvc.ErrUnsupported, 7},
		{"untag unknown name", svc.Untag(ref("fixture/small:a")), imgsvc.ErrNotFound, 2},
		{"untag an id", svc.Untag("sha256:" + strings.Repeat("0", 64)), imgsvc.ErrInvalidArgument, 1},
		{"bad credentials JSON field", pullWithAuth(svc, &imgsvc.Auth{Auth: "not base64!"}), imgsvc.ErrInvalidArgument, 1},
	}
	sentinels := []error{imgsvc.ErrInvalidArgument, imgsvc.ErrNotFound, imgsvc.ErrUnauthenticated,
		imgsvc.ErrPermissionDenied, imgsvc.ErrUnavailable, imgsvc.ErrIntegrity, imgsvc.ErrUnsupported,
		imgsvc.ErrStorageFull, imgsvc.ErrIO, imgsvc.ErrInternal}
	for _, c := range cases {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
			continue
		}
		var e *imgsvc.Error
		if !errors.As(c.err, &e) || e.Code != c.code || e.Message == "" {
			t.Errorf("%s: %#v", c.name, c.err)
		}
		for _, s := range sentinels {
			if s != c.want && errors.Is(c.err, s) {
				t.Errorf("%s: %v also matches %v", c.name, c.err, s)
			}
		}
	}
	assertEmpty(t, svc)
}

func pullErr(svc *imgsvc.Service, ctx context.Context, image string) error {
	_, err := svc.Pull(ctx, image, nil)
	return err
}

func pullWithAuth(svc *imgsvc.Service, auth *imgsvc.Auth) error {
	_, err := svc.Pull(context.Background(), ref("fixture/small:a"), &imgsvc.PullOptions{Auth: auth})
	return err
}

func TestUntag(t *testing.T) {
	svc, _ := open(t, nil)
	a, b := ref("fixture/small:a"), ref("fixture/small:b")
	if ida, idb := mustPull(t, svc, a), mustPull(t, svc, b); ida != idb {
		t.Fatalf("%s and %s differ: %s %s", a, b, ida, idb)
	}
	if err := svc.Untag(b); err != nil {
		t.Fatal(err)
	}
	images, err := svc.List("")
	if err != nil || len(images) != 1 || len(images[0].RepoTags) != 1 || images[0].RepoTags[0] != a {
		t.Fatalf("after untag: %+v %v", images, err)
	}
	if err := svc.Untag(a); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, svc)
}

// Cancelling the context mid-pull stops it with an error wrapping
// context.Canceled and leaves no image.
func TestPullContextCancel(t *testing.T) {
	svc, _ := open(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := svc.Pull(ctx, ref("fixture/debian:v1"), &imgsvc.PullOptions{
		Progress: func(p imgsvc.Progress) {
			if p.Kind == imgsvc.ProgressLayerStarted {
				cancel()
				// Give the watcher goroutine time to reach the C token, so
				// the cancel lands while the pull is still running.
				time.Sleep(100 * time.Millisecond)
			}
		},
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Pull: %v, want context.Canceled", err)
	}
	var e *imgsvc.Error
	if !errors.As(err, &e) || e.Code != 10 {
		t.Fatalf("Pull: %#v", err)
	}
	assertEmpty(t, svc)

	// A context that already ended does no work.
	if _, err := svc.Pull(ctx, ref("fixture/small:a"), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Pull with a cancelled context: %v", err)
	}
	assertEmpty(t, svc)
}

// stallServer accepts TCP connections and never sends a byte.
func stallServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// A context deadline stops a pull promptly even when no bytes flow; the
// error wraps context.DeadlineExceeded.
func TestPullDeadlineWithNoBytesFlowing(t *testing.T) {
	svc, _ := open(t, &imgsvc.Options{ProgressTimeout: -1})
	addr := stallServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := svc.Pull(ctx, addr+"/stalled/image:1", nil)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		!strings.HasSuffix(err.Error(), ": context deadline exceeded") {
		t.Fatalf("Pull: %v, want context.DeadlineExceeded", err)
	}
	if took < 450*time.Millisecond || took > 5*time.Second {
		t.Fatalf("took %v", took)
	}
}

// The service's own no-progress timeout (code 11) wraps
// context.DeadlineExceeded too: a registry that answers /v2/ and then
// never sends the manifest.
func TestProgressTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			w.WriteHeader(http.StatusOK)
			return
		}
		select { // stall until the test ends
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	svc, _ := open(t, &imgsvc.Options{ProgressTimeout: 300 * time.Millisecond})
	start := time.Now()
	_, err := svc.Pull(context.Background(), strings.TrimPrefix(srv.URL, "http://")+"/slow/image:1", nil)
	var e *imgsvc.Error
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &e) || e.Code != 11 {
		t.Fatalf("Pull: %#v, want a timeout", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("took %v", took)
	}
}

type progressPanic struct{ n int }

// A panic in the progress function stops the pull and comes back out of
// Pull, with its value, after the C call returned; the service still works.
func TestProgressPanicIsRaisedAgain(t *testing.T) {
	svc, _ := open(t, nil)
	calls := 0
	recovered := func() (r any) {
		defer func() { r = recover() }()
		svc.Pull(context.Background(), ref("fixture/debian:v1"), &imgsvc.PullOptions{
			Progress: func(p imgsvc.Progress) {
				calls++
				if p.Kind == imgsvc.ProgressLayerStarted {
					panic(progressPanic{42})
				}
			},
		})
		return nil
	}()
	if p, ok := recovered.(progressPanic); !ok || p.n != 42 {
		t.Fatalf("recovered %#v", recovered)
	}
	callsAtPanic := calls
	assertEmpty(t, svc)
	id := mustPull(t, svc, ref("fixture/small:a"))
	if calls != callsAtPanic {
		t.Fatalf("the panicking callback ran again")
	}
	if st, err := svc.Status(id, false); err != nil || st == nil {
		t.Fatalf("Status after panic: %+v %v", st, err)
	}
}

// Eight goroutines pull, list, look up and remove on one service.
func TestConcurrentUse(t *testing.T) {
	svc, root := open(t, nil)
	images := []string{"fixture/small:a", "fixture/small:b", "fixture/small-v2s2:latest", "fixture/small-zstd:latest",
		"fixture/root:latest", "fixture/named:latest", "fixture/multi:latest", "fixture/nomediatype:latest"}
	var mu sync.Mutex
	ids := map[string]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 6; i++ {
				image := ref(images[(g+i)%len(images)])
				id, err := svc.Pull(context.Background(), image, nil)
				if err != nil {
					errs <- fmt.Errorf("pull %s: %w", image, err)
					continue
				}
				mu.Lock()
				if prev, ok := ids[image]; ok && prev != id {
					errs <- fmt.Errorf("%s: %s then %s", image, prev, id)
				}
				ids[image] = id
				mu.Unlock()
				if _, err := svc.List(""); err != nil {
					errs <- fmt.Errorf("list: %w", err)
				}
				if st, err := svc.Status(image, i%2 == 0); err != nil || (st != nil && st.Image.ID != id) {
					errs <- fmt.Errorf("status %s: %+v %w", image, st, err)
				}
				if i%2 == 1 {
					if err := svc.Remove(image); err != nil {
						errs <- fmt.Errorf("remove %s: %w", image, err)
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, image := range images {
		if id := mustPull(t, svc, ref(image)); id != ids[ref(image)] {
			t.Errorf("%s: %s, earlier %s", image, id, ids[ref(image)])
		}
	}
	for _, id := range ids {
		if err := svc.Remove(id); err != nil {
			t.Error(err)
		}
	}
	assertEmpty(t, svc)
	if blobs, _ := filepath.Glob(filepath.Join(root, "blobs", "sha256", "*")); len(blobs) != 0 {
		t.Fatalf("blobs left: %v", blobs)
	}
}

func TestVersion(t *testing.T) {
	if !regexp.MustCompile(`^\d+\.\d+\.\d+`).MatchString(imgsvc.Version()) {
		t.Fatalf("Version() = %q", imgsvc.Version())
	}
}
