// Command imgsvc-go is a small image tool over the imgsvc Go binding.
//
//	imgsvc-go -root DIR pull IMAGE      pull with progress; Ctrl-C cancels
//	imgsvc-go -root DIR list [FILTER]   list images
//	imgsvc-go -root DIR inspect IMAGE   show one image and its config
//	imgsvc-go -root DIR rm IMAGE...     remove images (absent ones are fine)
//	imgsvc-go -root DIR fsinfo          filesystem usage of the store
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	imgsvc "github.com/imgsvc/imgsvc/bindings/go"
)

func main() {
	root := flag.String("root", "", "store directory (required)")
	timeout := flag.Duration("timeout", 0, "give up a pull after this long (0: no limit)")
	flag.Parse()
	args := flag.Args()
	if *root == "" || len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: imgsvc-go -root DIR pull IMAGE | list [FILTER] | inspect IMAGE | rm IMAGE... | fsinfo")
		os.Exit(2)
	}
	svc, err := imgsvc.Open(*root, nil)
	if err != nil {
		fail(err)
	}
	defer svc.Close()

	switch cmd, rest := args[0], args[1:]; {
	case cmd == "pull" && len(rest) == 1:
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if *timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, *timeout)
			defer cancel()
		}
		err = pull(ctx, svc, rest[0])
	case cmd == "list" && len(rest) <= 1:
		err = list(svc, strings.Join(rest, ""))
	case cmd == "inspect" && len(rest) == 1:
		err = inspect(svc, rest[0])
	case cmd == "rm" && len(rest) >= 1:
		for _, image := range rest {
			if err = svc.Remove(image); err != nil {
				break
			}
			fmt.Println("removed", image)
		}
	case cmd == "fsinfo" && len(rest) == 0:
		var usage imgsvc.FilesystemUsage
		if usage, err = svc.FsInfo(); err == nil {
			fmt.Printf("%s: %d bytes, %d inodes (at %s)\n", usage.Mountpoint, usage.UsedBytes, usage.InodesUsed,
				usage.Timestamp.Format(time.RFC3339))
		}
	default:
		fmt.Fprintf(os.Stderr, "imgsvc-go: bad command %q\n", strings.Join(args, " "))
		os.Exit(2)
	}
	if err != nil {
		svc.Close()
		fail(err)
	}
}

func pull(ctx context.Context, svc *imgsvc.Service, image string) error {
	var total, finished uint64
	id, err := svc.Pull(ctx, image, &imgsvc.PullOptions{
		Progress: func(p imgsvc.Progress) {
			switch p.Kind {
			case imgsvc.ProgressResolved:
				total = p.Total
				fmt.Fprintf(os.Stderr, "resolved %s: %d layers, %d bytes\n", p.Image, p.Layers, p.Total)
			case imgsvc.ProgressLayerDone, imgsvc.ProgressLayerSkipped:
				finished += p.Total
				fmt.Fprintf(os.Stderr, "  %.19s %-13s %3d%% of the image\n", p.Digest, p.Kind, percent(finished, total))
			case imgsvc.ProgressCommitted:
				fmt.Fprintf(os.Stderr, "committed %s\n", p.Image)
			}
		},
	})
	if err != nil {
		return err
	}
	fmt.Println(id)
	return nil
}

func percent(part, whole uint64) uint64 {
	if whole == 0 {
		return 100
	}
	return 100 * part / whole
}

func list(svc *imgsvc.Service, filter string) error {
	images, err := svc.List(filter)
	if err != nil {
		return err
	}
	fmt.Printf("%-13s  %10s  %s\n", "IMAGE ID", "SIZE", "TAGS")
	for _, img := range images {
		fmt.Printf("%-13.13s  %10d  %s\n", strings.TrimPrefix(img.ID, "sha256:"), img.Size, strings.Join(img.RepoTags, ", "))
	}
	return nil
}

func inspect(svc *imgsvc.Service, image string) error {
	st, err := svc.Status(image, true)
	if err != nil {
		return err
	}
	if st == nil {
		fmt.Fprintf(os.Stderr, "%s: no such image\n", image)
		os.Exit(3) // an answer, not an error
	}
	var info struct {
		ImageSpec struct {
			Config struct {
				User string `json:"User"`
			} `json:"config"`
			Architecture string `json:"architecture"`
			OS           string `json:"os"`
		} `json:"imageSpec"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil {
		return err
	}
	spec := info.ImageSpec
	fmt.Printf("id:       %s\ntags:     %s\ndigests:  %s\nsize:     %d\nplatform: %s/%s\nuser:     %q\n",
		st.Image.ID, strings.Join(st.Image.RepoTags, ", "), strings.Join(st.Image.RepoDigests, ", "), st.Image.Size,
		spec.OS, spec.Architecture, spec.Config.User)
	return nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "imgsvc-go:", err)
	switch {
	case errors.Is(err, context.Canceled):
		os.Exit(130)
	case errors.Is(err, imgsvc.ErrNotFound):
		os.Exit(4)
	}
	os.Exit(1)
}
