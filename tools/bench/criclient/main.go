// criclient: one CRI ImageService client for every daemon the benchmark
// measures (imgsvc serve, containerd's CRI plugin), so that latency numbers
// differ only by the server. It prints one JSON object on stdout.
//
//	criclient -endpoint unix:///S list   -n 100
//	criclient -endpoint unix:///S status -n 100 -image NAME [-verbose]
//	criclient -endpoint unix:///S fsinfo -n 100
//	criclient -endpoint unix:///S pull   -image A[,B,...] [-c 16]
//	criclient -endpoint unix:///S rmi    -image A[,B,...]
//
// list/status/fsinfo make one untimed warm-up call, then n timed calls, and
// report every call's latency in microseconds. pull starts c goroutines per
// image at once (c*len(images) PullImage calls) and reports the total wall
// time and each call's time.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "criclient: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	endpoint := flag.String("endpoint", "", "unix:///path/to/socket")
	n := flag.Int("n", 100, "timed calls (list, status, fsinfo)")
	image := flag.String("image", "", "image name(s), comma separated")
	verbose := flag.Bool("verbose", false, "ImageStatus verbose")
	conc := flag.Int("c", 1, "concurrent PullImage calls per image")
	timeout := flag.Duration("timeout", 30*time.Minute, "overall deadline")
	flag.Parse()
	if *endpoint == "" || flag.NArg() != 1 {
		fail("usage: criclient -endpoint unix:///S list|status|fsinfo|pull|rmi [flags]")
	}
	conn, err := grpc.NewClient(*endpoint,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(512<<20)))
	if err != nil {
		fail("connect %s: %v", *endpoint, err)
	}
	defer conn.Close()
	client := runtime.NewImageServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	images := []string{}
	for _, s := range strings.Split(*image, ",") {
		if s != "" {
			images = append(images, s)
		}
	}

	out := map[string]any{"op": flag.Arg(0)}
	timed := func(call func() error) {
		if err := call(); err != nil { // warm-up: connection, caches
			fail("%s: %v", flag.Arg(0), err)
		}
		lat := make([]float64, 0, *n)
		for i := 0; i < *n; i++ {
			t := time.Now()
			if err := call(); err != nil {
				fail("%s: %v", flag.Arg(0), err)
			}
			lat = append(lat, float64(time.Since(t).Nanoseconds())/1e3)
		}
		out["lat_us"] = lat
	}

	switch flag.Arg(0) {
	case "list":
		count := 0
		timed(func() error {
			r, err := client.ListImages(ctx, &runtime.ListImagesRequest{})
			if err == nil {
				count = len(r.Images)
			}
			return err
		})
		out["count"] = count
	case "status":
		if len(images) != 1 {
			fail("status needs one -image")
		}
		found := false
		timed(func() error {
			r, err := client.ImageStatus(ctx, &runtime.ImageStatusRequest{
				Image: &runtime.ImageSpec{Image: images[0]}, Verbose: *verbose})
			if err == nil {
				found = r.Image != nil
			}
			return err
		})
		if !found {
			fail("status: image %q not found", images[0])
		}
		out["found"] = found
	case "fsinfo":
		used := uint64(0)
		timed(func() error {
			r, err := client.ImageFsInfo(ctx, &runtime.ImageFsInfoRequest{})
			if err == nil && len(r.ImageFilesystems) > 0 && r.ImageFilesystems[0].UsedBytes != nil {
				used = r.ImageFilesystems[0].UsedBytes.Value
			}
			return err
		})
		out["used_bytes"] = used
	case "pull":
		if len(images) == 0 {
			fail("pull needs -image")
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var firstErr error
		lat := []float64{}
		ids := map[string]bool{}
		start := time.Now()
		for _, img := range images {
			for i := 0; i < *conc; i++ {
				wg.Add(1)
				go func(img string) {
					defer wg.Done()
					t := time.Now()
					r, err := client.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: img}})
					d := float64(time.Since(t).Nanoseconds()) / 1e3
					mu.Lock()
					defer mu.Unlock()
					if err != nil && firstErr == nil {
						firstErr = fmt.Errorf("pull %s: %w", img, err)
					}
					if err == nil {
						ids[r.ImageRef] = true
					}
					lat = append(lat, d)
				}(img)
			}
		}
		wg.Wait()
		out["wall_s"] = time.Since(start).Seconds()
		if firstErr != nil {
			fail("%v", firstErr)
		}
		out["lat_us"] = lat
		out["distinct_ids"] = len(ids)
	case "rmi":
		for _, img := range images {
			if _, err := client.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: img}}); err != nil {
				fail("rmi %s: %v", img, err)
			}
		}
	default:
		fail("unknown operation %q", flag.Arg(0))
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail("%v", err)
	}
}
