/*
 * pull: pull an image into a store, showing progress; Ctrl-C cancels.
 *
 *   pull ROOT IMAGE
 *
 * Prints the image id on stdout; progress goes to stderr (one redrawn line
 * on a terminal, one line per event otherwise).
 */
#define _POSIX_C_SOURCE 200809L /* pthread_sigmask, sigwait */
#include <imgsvc.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { MAX_BLOBS = 64 };

typedef struct {
    bool tty;
    uint64_t total_bytes, blobs_finished;
    int nblobs;
    struct {
        char digest[80];
        uint64_t done;
    } blobs[MAX_BLOBS]; /* bytes so far per blob; blobs download in parallel */
} display;

/* 1234567 -> "1.2 MB" */
static const char *human(char buf[16], uint64_t bytes) {
    if (bytes < 1000) snprintf(buf, 16, "%llu B", (unsigned long long)bytes);
    else if (bytes < 1000000) snprintf(buf, 16, "%.1f kB", bytes / 1e3);
    else if (bytes < 1000000000) snprintf(buf, 16, "%.1f MB", bytes / 1e6);
    else snprintf(buf, 16, "%.2f GB", bytes / 1e9);
    return buf;
}

static void record(display *d, const char *digest, uint64_t done) {
    for (int i = 0; i < d->nblobs; i++) {
        if (strcmp(d->blobs[i].digest, digest) == 0) {
            d->blobs[i].done = done;
            return;
        }
    }
    if (d->nblobs < MAX_BLOBS) {
        snprintf(d->blobs[d->nblobs].digest, sizeof d->blobs[0].digest, "%s", digest);
        d->blobs[d->nblobs++].done = done;
    }
}

static int32_t on_progress(void *userdata, const imgsvc_progress *ev) {
    display *d = userdata;
    char a[16], b[16];
    /* The digest without "sha256:", cut to 12 characters, as docker shows it. */
    const char *hex = strchr(ev->digest, ':');
    hex = hex ? hex + 1 : ev->digest;
    switch (ev->kind) {
    case IMGSVC_PROGRESS_RESOLVED:
        d->total_bytes = ev->total;
        fprintf(stderr, "resolved %s: %llu layers, %s\n", ev->image, (unsigned long long)ev->layers,
                human(a, ev->total));
        return 0;
    case IMGSVC_PROGRESS_LAYER_STARTED:
    case IMGSVC_PROGRESS_BYTES:
        record(d, ev->digest, ev->done);
        break;
    case IMGSVC_PROGRESS_LAYER_DONE:
    case IMGSVC_PROGRESS_LAYER_SKIPPED:
        record(d, ev->digest, ev->total);
        d->blobs_finished++;
        break;
    case IMGSVC_PROGRESS_COMMITTED:
        if (d->tty) fputc('\n', stderr);
        fprintf(stderr, "committed %s\n", ev->image);
        return 0;
    default: /* a kind added in a newer library */
        return 0;
    }
    if (d->tty) {
        uint64_t now = 0;
        for (int i = 0; i < d->nblobs; i++) now += d->blobs[i].done;
        int pct = d->total_bytes ? (int)(100 * now / d->total_bytes) : 100;
        fprintf(stderr, "\r%3d%% %10s / %-10s %llu blobs done", pct, human(a, now), human(b, d->total_bytes),
                (unsigned long long)d->blobs_finished);
    } else {
        const char *what = ev->kind == IMGSVC_PROGRESS_LAYER_STARTED ? "started"
                           : ev->kind == IMGSVC_PROGRESS_BYTES       ? "downloading"
                           : ev->kind == IMGSVC_PROGRESS_LAYER_DONE  ? "done"
                                                                     : "already present";
        fprintf(stderr, "  %.12s %-15s %10s / %s\n", hex, what, human(a, ev->done), human(b, ev->total));
    }
    return 0; /* non-zero would cancel the pull */
}

/* Ctrl-C: a thread waits for the signal and cancels the pull (the token is
 * thread-safe but not async-signal-safe, so no signal handler). SIGUSR1 tells
 * the thread that the pull is over. */
typedef struct {
    imgsvc_cancel_token *token;
    sigset_t signals;
} signal_watch;

static void *watch_signals(void *arg) {
    signal_watch *w = arg;
    int sig = 0;
    if (sigwait(&w->signals, &sig) == 0 && sig != SIGUSR1) {
        fprintf(stderr, "\ncancelling\n");
        imgsvc_cancel_token_cancel(w->token);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s ROOT IMAGE\n", argv[0]);
        return 2;
    }
    /* Block the signals before the library starts its threads (in
     * imgsvc_service_open), so that they inherit the mask and only the
     * watcher thread receives the signals. */
    signal_watch watch = {.token = imgsvc_cancel_token_new()};
    sigemptyset(&watch.signals);
    sigaddset(&watch.signals, SIGINT);
    sigaddset(&watch.signals, SIGTERM);
    sigaddset(&watch.signals, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &watch.signals, NULL);
    pthread_t watcher;
    pthread_create(&watcher, NULL, watch_signals, &watch);

    imgsvc_service *svc = NULL;
    imgsvc_error *err = NULL;
    imgsvc_status rc = imgsvc_service_open(argv[1], "{\"progress_timeout_ms\":60000}", &svc, &err);
    char *id = NULL;
    display d = {.tty = isatty(STDERR_FILENO)};
    if (rc == IMGSVC_OK) rc = imgsvc_service_pull(svc, argv[2], NULL, on_progress, &d, watch.token, &id, &err);

    pthread_kill(watcher, SIGUSR1);
    pthread_join(watcher, NULL);
    imgsvc_cancel_token_free(watch.token);

    int exit_code = 0;
    if (rc == IMGSVC_OK) {
        printf("%s\n", id);
        imgsvc_string_free(id);
    } else {
        fprintf(stderr, "pull %s: %s: %s\n", argv[2], imgsvc_status_name(rc), imgsvc_error_message(err));
        imgsvc_error_free(err);
        exit_code = rc == IMGSVC_CANCELLED ? 130 : 1;
    }
    imgsvc_service_free(svc);
    return exit_code;
}
