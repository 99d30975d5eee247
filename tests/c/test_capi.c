/*
 * Tests of the imgsvc C ABI against a real registry.
 *
 * Needs IMGSVC_TEST_REGISTRY=host:port, a plain-HTTP registry holding the
 * fixtures of scripts/fixtures.sh, and IMGSVC_TEST_SECURE_DIR, the directory
 * of a registry started with tests/c/secure-registry.sh (HTTPS with its own
 * CA, basic auth). IMGSVC_C_STRESS_ITERS sets the rounds of the 8-thread test
 * (default 6) and IMGSVC_C_HUGE_MB the size of the huge strings (default
 * 100); tests/c-go.sh lowers both under valgrind.
 * Prints one line per test and closes with "N passed, N failed".
 */
#define _GNU_SOURCE /* mkdtemp, nftw */
#include <imgsvc.h>

#include <arpa/inet.h>
#include <errno.h>
#include <dirent.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *registry;
static const char *secure_dir;   /* tests/c/secure-registry.sh's DIR */
static char secure_addr[64];     /* its host:port */
static const char *self_path;    /* this program, for child processes */
static int passed, failed;
static bool current_ok;

#define CHECK(cond, ...)                                                           \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                          \
            fputc('\n', stderr);                                                   \
            current_ok = false;                                                    \
        }                                                                          \
    } while (0)

/* Check a status code; on failure show the error message too. */
#define CHECK_CODE(got, want, err)                                                 \
    CHECK((got) == (want), "code %d (%s), want %d; message: %s", (int)(got),      \
          imgsvc_status_name(got), (int)(want), imgsvc_error_message(err))

static void run(const char *name, void (*test)(void)) {
    current_ok = true;
    test();
    if (current_ok) {
        passed++;
        printf("ok   %s\n", name);
    } else {
        failed++;
        printf("FAIL %s\n", name);
    }
    fflush(stdout);
}

/* ---- helpers ------------------------------------------------------------ */

/* Free an error and clear the pointer, ready for the next call. */
static void drop_err(imgsvc_error **err) {
    imgsvc_error_free(*err);
    *err = NULL;
}

static char *ref(const char *path) {
    char *out = NULL;
    if (asprintf(&out, "%s/%s", registry, path) < 0) abort();
    return out;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* A fresh store directory and a service on it. */
typedef struct {
    char root[64];
    imgsvc_service *svc;
} store;

static bool store_open(store *s, const char *options_json) {
    strcpy(s->root, "/tmp/imgsvc-capi-test.XXXXXX");
    if (!mkdtemp(s->root)) {
        perror("mkdtemp");
        return false;
    }
    imgsvc_error *err = NULL;
    s->svc = NULL;
    imgsvc_status rc = imgsvc_service_open(s->root, options_json, &s->svc, &err);
    CHECK_CODE(rc, IMGSVC_OK, err);
    drop_err(&err);
    return rc == IMGSVC_OK;
}

static void store_close(store *s) {
    imgsvc_service_free(s->svc);
    rm_rf(s->root);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The list as JSON (caller frees), or NULL after a failed check. */
static char *list_json(const imgsvc_service *svc, const char *filter) {
    char *json = NULL;
    imgsvc_error *err = NULL;
    imgsvc_status rc = imgsvc_service_list(svc, filter, &json, &err);
    CHECK_CODE(rc, IMGSVC_OK, err);
    drop_err(&err);
    return json;
}

static bool list_is_empty(const imgsvc_service *svc) {
    char *json = list_json(svc, NULL);
    bool empty = json && strcmp(json, "{\"images\":[]}") == 0;
    if (!empty) fprintf(stderr, "  list: %s\n", json ? json : "(null)");
    imgsvc_string_free(json);
    return empty;
}

/* Pull without progress; returns the id (caller frees) or NULL. */
static char *pull(const imgsvc_service *svc, const char *image) {
    char *id = NULL;
    imgsvc_error *err = NULL;
    imgsvc_status rc = imgsvc_service_pull(svc, image, NULL, NULL, NULL, NULL, &id, &err);
    CHECK_CODE(rc, IMGSVC_OK, err);
    drop_err(&err);
    return id;
}

static bool is_image_id(const char *id) {
    if (!id || strncmp(id, "sha256:", 7) != 0 || strlen(id) != 71) return false;
    for (const char *p = id + 7; *p; p++)
        if (!strchr("0123456789abcdef", *p)) return false;
    return true;
}

/* A TCP server that accepts connections and never answers: a registry from
 * which no byte ever comes. */
typedef struct {
    int listen_fd;
    int port;
    pthread_t thread;
    int conns[64];
    int nconns;
} stall_server;

static void *stall_accept(void *arg) {
    stall_server *s = arg;
    for (;;) {
        int fd = accept(s->listen_fd, NULL, NULL);
        if (fd < 0) return NULL; /* shut down */
        if (s->nconns < 64) s->conns[s->nconns++] = fd;
        else close(fd);
    }
}

static bool stall_start(stall_server *s) {
    memset(s, 0, sizeof *s);
    s->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (bind(s->listen_fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(s->listen_fd, 16) != 0 ||
        getsockname(s->listen_fd, (struct sockaddr *)&addr, &len) != 0) {
        perror("stall server");
        return false;
    }
    s->port = ntohs(addr.sin_port);
    return pthread_create(&s->thread, NULL, stall_accept, s) == 0;
}

static void stall_stop(stall_server *s) {
    shutdown(s->listen_fd, SHUT_RDWR); /* wakes accept() */
    pthread_join(s->thread, NULL);
    close(s->listen_fd);
    for (int i = 0; i < s->nconns; i++) close(s->conns[i]);
}

/* ---- tests -------------------------------------------------------------- */

static void test_version_and_names(void) {
    CHECK(strlen(imgsvc_version()) > 0, "empty version");
    CHECK(strcmp(imgsvc_status_name(IMGSVC_OK), "ok") == 0, "%s", imgsvc_status_name(IMGSVC_OK));
    CHECK(strcmp(imgsvc_status_name(IMGSVC_NOT_FOUND), "not found") == 0, "%s", imgsvc_status_name(2));
    CHECK(strcmp(imgsvc_status_name(1000), "unknown") == 0, "%s", imgsvc_status_name(1000));
}

static void test_null_arguments(void) {
    imgsvc_error *err = NULL;
    imgsvc_service *svc = (imgsvc_service *)0x1; /* must stay untouched */
    imgsvc_status rc = imgsvc_service_open(NULL, NULL, &svc, &err);
    CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err);
    CHECK(imgsvc_error_code(err) == IMGSVC_INVALID_ARGUMENT, "error object code %d", imgsvc_error_code(err));
    CHECK(strstr(imgsvc_error_message(err), "root") != NULL, "message: %s", imgsvc_error_message(err));
    CHECK(svc == (imgsvc_service *)0x1, "out-pointer written on failure");
    drop_err(&err);

    /* No error object wanted: the code alone. */
    CHECK(imgsvc_service_open("/tmp/x", NULL, NULL, NULL) == IMGSVC_INVALID_ARGUMENT, "NULL out_service");

    store s;
    if (!store_open(&s, NULL)) return;
    char *json = (char *)0x1;
    CHECK(imgsvc_service_list(NULL, NULL, &json, NULL) == IMGSVC_INVALID_ARGUMENT, "NULL service");
    CHECK(imgsvc_service_list(s.svc, NULL, NULL, NULL) == IMGSVC_INVALID_ARGUMENT, "NULL out_json");
    CHECK(imgsvc_service_status(s.svc, NULL, false, &json, NULL) == IMGSVC_INVALID_ARGUMENT, "NULL image");
    CHECK(imgsvc_service_status(s.svc, "x", false, NULL, NULL) == IMGSVC_INVALID_ARGUMENT, "NULL out_json");
    CHECK(imgsvc_service_pull(s.svc, NULL, NULL, NULL, NULL, NULL, &json, NULL) == IMGSVC_INVALID_ARGUMENT,
          "NULL image");
    /* A NULL out-pointer is refused before any download happens. */
    char *img = ref("fixture/small:a");
    CHECK(imgsvc_service_pull(s.svc, img, NULL, NULL, NULL, NULL, NULL, NULL) == IMGSVC_INVALID_ARGUMENT,
          "NULL out_image_id");
    free(img);
    CHECK(list_is_empty(s.svc), "a pull with a NULL out-pointer did work");
    CHECK(imgsvc_service_remove(s.svc, NULL, NULL) == IMGSVC_INVALID_ARGUMENT, "NULL image");
    CHECK(imgsvc_service_remove(NULL, "x", NULL) == IMGSVC_INVALID_ARGUMENT, "NULL service");
    CHECK(imgsvc_service_untag(s.svc, NULL, NULL) == IMGSVC_INVALID_ARGUMENT, "NULL name");
    CHECK(imgsvc_service_fs_info(s.svc, NULL, NULL) == IMGSVC_INVALID_ARGUMENT, "NULL out_json");
    CHECK(imgsvc_service_fs_info(NULL, &json, NULL) == IMGSVC_INVALID_ARGUMENT, "NULL service");
    CHECK(imgsvc_service_fsck(NULL, false, &json, NULL) == IMGSVC_INVALID_ARGUMENT, "NULL service");
    CHECK(imgsvc_service_fsck(s.svc, true, NULL, NULL) == IMGSVC_INVALID_ARGUMENT, "NULL out_json");
    CHECK(json == (char *)0x1, "out-pointer written on failure");

    /* Every free and accessor takes NULL. */
    imgsvc_service_free(NULL);
    imgsvc_string_free(NULL);
    imgsvc_error_free(NULL);
    imgsvc_cancel_token_free(NULL);
    imgsvc_cancel_token_cancel(NULL);
    CHECK(!imgsvc_cancel_token_is_cancelled(NULL), "NULL token cancelled");
    CHECK(imgsvc_error_code(NULL) == IMGSVC_OK, "code of NULL");
    CHECK(strcmp(imgsvc_error_message(NULL), "") == 0, "message of NULL");
    store_close(&s);
}

static void test_invalid_utf8(void) {
    const char bad[] = {'f', 'i', 'x', (char)0xff, (char)0xfe, ':', 'a', 0};
    imgsvc_error *err = NULL;
    imgsvc_service *svc = NULL;
    imgsvc_status rc = imgsvc_service_open(bad, NULL, &svc, &err);
    CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err);
    CHECK(strstr(imgsvc_error_message(err), "UTF-8") != NULL, "%s", imgsvc_error_message(err));
    drop_err(&err);
    CHECK(imgsvc_service_open("/tmp/x", bad, &svc, NULL) == IMGSVC_INVALID_ARGUMENT, "bad options bytes");

    store s;
    if (!store_open(&s, NULL)) return;
    char *out = NULL;
    CHECK(imgsvc_service_list(s.svc, bad, &out, NULL) == IMGSVC_INVALID_ARGUMENT, "list");
    CHECK(imgsvc_service_status(s.svc, bad, true, &out, NULL) == IMGSVC_INVALID_ARGUMENT, "status");
    rc = imgsvc_service_pull(s.svc, bad, NULL, NULL, NULL, NULL, &out, &err);
    CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err);
    drop_err(&err);
    char *img = ref("fixture/small:a");
    CHECK(imgsvc_service_pull(s.svc, img, bad, NULL, NULL, NULL, &out, NULL) == IMGSVC_INVALID_ARGUMENT, "auth");
    free(img);
    CHECK(imgsvc_service_remove(s.svc, bad, NULL) == IMGSVC_INVALID_ARGUMENT, "remove");
    CHECK(imgsvc_service_untag(s.svc, bad, NULL) == IMGSVC_INVALID_ARGUMENT, "untag");
    CHECK(out == NULL, "out-pointer written on failure");
    store_close(&s);
}

static void test_options(void) {
    const char *bad[] = {
        "{\"pinned\":[],\"colour\":\"blue\"}",  /* unknown key */
        "{\"max_parallel_downloads\":0}",      /* out of range (core) */
        "{\"max_parallel_downloads\":65}",     /* out of range (core) */
        "{\"max_parallel_downloads\":-3}",     /* negative */
        "{\"progress_timeout_ms\":1e99}",      /* not an integer */
        "{\"connect_timeout_ms\":0}",          /* would fail every connection */
        "{\"progress_timeout_ms\":18446744073709551616}", /* past u64 */
        "{\"auth_file\":3}",                  /* a path is a string */
        "{\"certs_dir\":[\"/etc\"]}",
        "{\"system_registry_config\":\"yes\"}", /* a bool */
        "not json",
        "[]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        imgsvc_service *svc = NULL;
        imgsvc_error *err = NULL;
        imgsvc_status rc = imgsvc_service_open("/tmp/imgsvc-capi-never-created", bad[i], &svc, &err);
        CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err);
        CHECK(svc == NULL, "service made for %s", bad[i]);
        drop_err(&err);
    }
    CHECK(access("/tmp/imgsvc-capi-never-created", F_OK) != 0, "a rejected open created the store");

    /* Every key at once, and the pinned pattern shows up in the list. */
    char opts[256];
    snprintf(opts, sizeof opts,
             "{\"pinned\":[\"%s/fixture/root*\"],\"max_parallel_downloads\":2,"
             "\"progress_timeout_ms\":0,\"connect_timeout_ms\":5000}",
             registry);
    store s;
    if (!store_open(&s, opts)) return;
    char *img = ref("fixture/root:latest");
    char *id = pull(s.svc, img);
    char *json = list_json(s.svc, NULL);
    CHECK(json && strstr(json, "\"pinned\":true"), "list: %s", json);
    imgsvc_string_free(json);
    imgsvc_string_free(id);
    free(img);
    store_close(&s);
}

static void test_bad_reference(void) {
    store s;
    if (!store_open(&s, NULL)) return;
    const char *bad[] = {"", "UPPER/case:tag", "fixture/small:a b", "fixture/small@sha256:abc", "a//b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *id = (char *)0x1;
        imgsvc_error *err = NULL;
        imgsvc_status rc = imgsvc_service_pull(s.svc, bad[i], NULL, NULL, NULL, NULL, &id, &err);
        CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err);
        CHECK(id == (char *)0x1, "out-pointer written on failure for \"%s\"", bad[i]);
        CHECK(strlen(imgsvc_error_message(err)) > 0, "empty message for \"%s\"", bad[i]);
        drop_err(&err);
    }
    imgsvc_error *err = NULL;
    char *img = ref("fixture/small:a");
    char *id = NULL;
    imgsvc_status rc = imgsvc_service_pull(s.svc, img, "{\"user\":\"x\"}", NULL, NULL, NULL, &id, &err);
    CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err);
    drop_err(&err);
    free(img);
    store_close(&s);
}

static void test_missing_tag_is_not_found(void) {
    store s;
    if (!store_open(&s, NULL)) return;
    const char *missing[] = {"fixture/small:no-such-tag", "fixture/no-such-repo:latest"};
    for (size_t i = 0; i < 2; i++) {
        char *img = ref(missing[i]);
        char *id = NULL;
        imgsvc_error *err = NULL;
        imgsvc_status rc = imgsvc_service_pull(s.svc, img, NULL, NULL, NULL, NULL, &id, &err);
        CHECK_CODE(rc, IMGSVC_NOT_FOUND, err);
        CHECK(id == NULL, "id written on failure");
        drop_err(&err);
        free(img);
    }
    CHECK(list_is_empty(s.svc), "a failed pull left an image");
    store_close(&s);
}

static void test_absent_status_and_remove(void) {
    store s;
    if (!store_open(&s, NULL)) return;
    const char *absent[] = {"fixture/small:a", "sha256:0123456789012345678901234567890123456789012345678901234567890123",
                            "abcdef012345"};
    for (size_t i = 0; i < 3; i++) {
        char *json = (char *)0x1;
        imgsvc_error *err = NULL;
        imgsvc_status rc = imgsvc_service_status(s.svc, absent[i], true, &json, &err);
        CHECK_CODE(rc, IMGSVC_OK, err);
        CHECK(json == NULL, "status of absent %s gave %p", absent[i], (void *)json);
        CHECK(err == NULL, "success made an error object");
        rc = imgsvc_service_remove(s.svc, absent[i], &err);
        CHECK_CODE(rc, IMGSVC_OK, err);
        drop_err(&err);
    }
    store_close(&s);
}

typedef struct {
    int events, resolved, started, bytes, done, skipped, committed;
    int first_kind, last_kind;
    bool bytes_in_range, json_ok;
    char committed_id[80];
    char resolved_image[256];
} progress_log;

static int32_t record_progress(void *userdata, const imgsvc_progress *ev) {
    progress_log *log = userdata;
    if (log->events++ == 0) log->first_kind = ev->kind;
    log->last_kind = ev->kind;
    if (!ev->json || !strstr(ev->json, "\"type\":")) log->json_ok = false;
    switch (ev->kind) {
    case IMGSVC_PROGRESS_RESOLVED:
        log->resolved++;
        snprintf(log->resolved_image, sizeof log->resolved_image, "%s", ev->image);
        break;
    case IMGSVC_PROGRESS_LAYER_STARTED: log->started++; break;
    case IMGSVC_PROGRESS_BYTES:
        log->bytes++;
        if (ev->done > ev->total) log->bytes_in_range = false;
        break;
    case IMGSVC_PROGRESS_LAYER_DONE: log->done++; break;
    case IMGSVC_PROGRESS_LAYER_SKIPPED: log->skipped++; break;
    case IMGSVC_PROGRESS_COMMITTED:
        log->committed++;
        snprintf(log->committed_id, sizeof log->committed_id, "%s", ev->image);
        break;
    }
    return 0;
}

static void test_pull_list_status_prefix_fsinfo(void) {
    store s;
    if (!store_open(&s, NULL)) return;
    char *img = ref("fixture/debian:v1");
    progress_log log = {.bytes_in_range = true, .json_ok = true};
    char *id = NULL;
    imgsvc_error *err = NULL;
    imgsvc_status rc = imgsvc_service_pull(s.svc, img, NULL, record_progress, &log, NULL, &id, &err);
    CHECK_CODE(rc, IMGSVC_OK, err);
    drop_err(&err);
    if (rc != IMGSVC_OK) goto out;
    CHECK(is_image_id(id), "id %s", id);
    CHECK(log.first_kind == IMGSVC_PROGRESS_RESOLVED && log.resolved == 1, "first %d", log.first_kind);
    CHECK(strstr(log.resolved_image, "fixture/debian:v1") != NULL, "resolved %s", log.resolved_image);
    CHECK(log.last_kind == IMGSVC_PROGRESS_COMMITTED && log.committed == 1, "last %d", log.last_kind);
    CHECK(strcmp(log.committed_id, id) == 0, "committed %s vs %s", log.committed_id, id);
    CHECK(log.started >= 3 && log.done == log.started, "started %d done %d", log.started, log.done);
    CHECK(log.bytes_in_range && log.json_ok, "bytes in range %d, json %d", log.bytes_in_range, log.json_ok);

    /* Pulling again skips every blob and gives the same id. */
    progress_log again = {.bytes_in_range = true, .json_ok = true};
    char *id2 = NULL;
    rc = imgsvc_service_pull(s.svc, img, NULL, record_progress, &again, NULL, &id2, NULL);
    CHECK(rc == IMGSVC_OK && id2 && strcmp(id, id2) == 0, "second pull %d %s", rc, id2);
    CHECK(again.started == 0 && again.skipped >= 3, "started %d skipped %d", again.started, again.skipped);
    imgsvc_string_free(id2);

    char *json = list_json(s.svc, NULL);
    CHECK(json && strstr(json, id) && strstr(json, "\"uid\":{\"value\":\"65534\"}"), "list: %s", json);
    imgsvc_string_free(json);

    /* Short id prefix (as crictl shows: 12 hex digits) finds the image. */
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%.12s", id + 7);
    json = NULL;
    rc = imgsvc_service_status(s.svc, prefix, false, &json, &err);
    CHECK_CODE(rc, IMGSVC_OK, err);
    CHECK(json && strstr(json, id) && !strstr(json, "imageSpec"), "status by prefix: %s", json);
    imgsvc_string_free(json);
    json = list_json(s.svc, prefix);
    CHECK(json && strstr(json, id), "list by prefix: %s", json);
    imgsvc_string_free(json);

    json = NULL;
    rc = imgsvc_service_status(s.svc, img, true, &json, &err);
    CHECK_CODE(rc, IMGSVC_OK, err);
    CHECK(json && strstr(json, "\"imageSpec\"") && strstr(json, "\"repoTags\""), "verbose: %.200s", json);
    imgsvc_string_free(json);

    json = NULL;
    rc = imgsvc_service_fs_info(s.svc, &json, &err);
    CHECK_CODE(rc, IMGSVC_OK, err);
    char mount[128];
    snprintf(mount, sizeof mount, "\"mountpoint\":\"%s\"", s.root);
    CHECK(json && strstr(json, mount) && strstr(json, "\"usedBytes\":{\"value\":\"") &&
              !strstr(json, "\"usedBytes\":{\"value\":\"0\"}"),
          "fs_info: %s", json);
    imgsvc_string_free(json);

    /* Remove by the prefix: gone, and its blobs too. */
    rc = imgsvc_service_remove(s.svc, prefix, &err);
    CHECK_CODE(rc, IMGSVC_OK, err);
    CHECK(list_is_empty(s.svc), "image still listed after remove");
out:
    imgsvc_string_free(id);
    free(img);
    store_close(&s);
}

static void test_untag(void) {
    store s;
    if (!store_open(&s, NULL)) return;
    char *a = ref("fixture/small:a"), *b = ref("fixture/small:b");
    char *id_a = pull(s.svc, a), *id_b = pull(s.svc, b);
    CHECK(id_a && id_b && strcmp(id_a, id_b) == 0, "%s vs %s", id_a, id_b);
    imgsvc_error *err = NULL;
    imgsvc_status rc = imgsvc_service_untag(s.svc, b, &err);
    CHECK_CODE(rc, IMGSVC_OK, err);
    char *json = list_json(s.svc, NULL);
    CHECK(json && strstr(json, ":a\"") && !strstr(json, ":b\""), "after untag: %s", json);
    imgsvc_string_free(json);
    rc = imgsvc_service_untag(s.svc, b, &err);
    CHECK_CODE(rc, IMGSVC_NOT_FOUND, err);
    drop_err(&err);
    if (id_a) {
        rc = imgsvc_service_untag(s.svc, id_a, &err);
        CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err);
        drop_err(&err);
    }
    rc = imgsvc_service_untag(s.svc, a, &err);
    CHECK_CODE(rc, IMGSVC_OK, err);
    CHECK(list_is_empty(s.svc), "image outlived its last name");
    imgsvc_string_free(id_a);
    imgsvc_string_free(id_b);
    free(a);
    free(b);
    store_close(&s);
}

/* Cancel from another thread while the pull's callback holds it at its first
 * layer, so the cancel surely lands mid-pull. */
typedef struct {
    imgsvc_cancel_token *token;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started, cancelled;
} canceller;

static void *cancel_when_started(void *arg) {
    canceller *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->started) pthread_cond_wait(&c->cv, &c->mu);
    imgsvc_cancel_token_cancel(c->token);
    c->cancelled = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static int32_t hold_at_first_layer(void *userdata, const imgsvc_progress *ev) {
    canceller *c = userdata;
    if (ev->kind != IMGSVC_PROGRESS_LAYER_STARTED) return 0;
    pthread_mutex_lock(&c->mu);
    c->started = true;
    pthread_cond_broadcast(&c->cv);
    while (!c->cancelled) pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    return 0; /* go on: the token does the cancelling */
}

static void test_cancel_token(void) {
    store s;
    if (!store_open(&s, NULL)) return;
    char *img = ref("fixture/debian:v1");
    canceller c = {.token = imgsvc_cancel_token_new()};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    pthread_t t;
    pthread_create(&t, NULL, cancel_when_started, &c);
    char *id = NULL;
    imgsvc_error *err = NULL;
    imgsvc_status rc = imgsvc_service_pull(s.svc, img, NULL, hold_at_first_layer, &c, c.token, &id, &err);
    if (!c.started) { /* the callback never ran: release the thread */
        pthread_mutex_lock(&c.mu);
        c.started = true;
        pthread_cond_broadcast(&c.cv);
        pthread_mutex_unlock(&c.mu);
    }
    pthread_join(t, NULL);
    CHECK_CODE(rc, IMGSVC_CANCELLED, err);
    CHECK(id == NULL, "id written on failure");
    CHECK(imgsvc_cancel_token_is_cancelled(c.token), "token not cancelled");
    drop_err(&err);
    CHECK(list_is_empty(s.svc), "a cancelled pull left an image");

    /* An already cancelled token stops the next pull at once. */
    rc = imgsvc_service_pull(s.svc, img, NULL, NULL, NULL, c.token, &id, &err);
    CHECK_CODE(rc, IMGSVC_CANCELLED, err);
    drop_err(&err);
    imgsvc_cancel_token_free(c.token);
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.cv);

    /* The service still works after cancelled pulls. */
    id = pull(s.svc, img);
    CHECK(is_image_id(id), "pull after cancel: %s", id);
    imgsvc_string_free(id);
    free(img);
    store_close(&s);
}

typedef struct {
    imgsvc_cancel_token *token;
    double delay_s;
} delayed_cancel;

static void *cancel_after(void *arg) {
    delayed_cancel *d = arg;
    usleep((useconds_t)(d->delay_s * 1e6));
    imgsvc_cancel_token_cancel(d->token);
    return NULL;
}

static void test_cancel_with_no_bytes_flowing(void) {
    stall_server srv;
    if (!stall_start(&srv)) {
        CHECK(false, "stall server did not start");
        return;
    }
    store s;
    /* No-progress timeout off: only the token can end this pull. */
    if (!store_open(&s, "{\"progress_timeout_ms\":0}")) {
        stall_stop(&srv);
        return;
    }
    char img[64];
    snprintf(img, sizeof img, "127.0.0.1:%d/stalled/image:1", srv.port);
    delayed_cancel d = {.token = imgsvc_cancel_token_new(), .delay_s = 0.5};
    pthread_t t;
    pthread_create(&t, NULL, cancel_after, &d);
    double start = now_s();
    char *id = NULL;
    imgsvc_error *err = NULL;
    imgsvc_status rc = imgsvc_service_pull(s.svc, img, NULL, NULL, NULL, d.token, &id, &err);
    double took = now_s() - start;
    pthread_join(t, NULL);
    CHECK_CODE(rc, IMGSVC_CANCELLED, err);
    CHECK(srv.nconns > 0, "the pull never reached the stalled server");
    /* 0.5 s until the cancel, then promptly (generous for valgrind). */
    CHECK(took >= 0.45 && took < 5.0, "took %.2f s", took);
    drop_err(&err);
    imgsvc_cancel_token_free(d.token);
    store_close(&s);
    stall_stop(&srv);
}

static int32_t cancel_on_first_bytes(void *userdata, const imgsvc_progress *ev) {
    int *seen = userdata;
    if (ev->kind == IMGSVC_PROGRESS_LAYER_STARTED || ev->kind == IMGSVC_PROGRESS_BYTES) {
        (*seen)++;
        return 1;
    }
    return 0;
}

static void test_callback_cancel(void) {
    store s;
    if (!store_open(&s, NULL)) return;
    char *img = ref("fixture/debian:v1");
    int seen = 0;
    char *id = NULL;
    imgsvc_error *err = NULL;
    imgsvc_status rc = imgsvc_service_pull(s.svc, img, NULL, cancel_on_first_bytes, &seen, NULL, &id, &err);
    CHECK_CODE(rc, IMGSVC_CANCELLED, err);
    CHECK(seen == 1, "callback ran %d times after cancelling", seen);
    CHECK(id == NULL, "id written on failure");
    drop_err(&err);
    CHECK(list_is_empty(s.svc), "a cancelled pull left an image");
    char *json = (char *)0x1;
    rc = imgsvc_service_status(s.svc, img, false, &json, NULL);
    CHECK(rc == IMGSVC_OK && json == NULL, "status after cancel: %d %s", rc, json ? json : "(null)");
    free(img);
    store_close(&s);
}

/* ---- 8 threads on one service ------------------------------------------- */

enum { THREADS = 8 };
static const char *stress_images[] = {
    "fixture/small:a",      "fixture/small:b",       "fixture/small-v2s2:latest", "fixture/small-zstd:latest",
    "fixture/root:latest",  "fixture/named:latest",  "fixture/multi:latest",      "fixture/nomediatype:latest",
    "fixture/small-plain:latest",
};
enum { NIMAGES = sizeof stress_images / sizeof stress_images[0] };

typedef struct {
    const imgsvc_service *svc;
    int iters;
    pthread_mutex_t mu;
    char ids[NIMAGES][80]; /* first id seen per reference */
    int pulls, lists, removes, failures;
    char first_failure[512];
} stress_shared;

typedef struct {
    stress_shared *sh;
    int index;
} stress_arg;

static void stress_fail(stress_shared *sh, const char *what, const char *image, imgsvc_status rc, imgsvc_error *err) {
    pthread_mutex_lock(&sh->mu);
    if (sh->failures++ == 0)
        snprintf(sh->first_failure, sizeof sh->first_failure, "%s %s: code %d: %s", what, image, rc,
                 imgsvc_error_message(err));
    pthread_mutex_unlock(&sh->mu);
}

static void *stress_thread(void *arg) {
    stress_arg *a = arg;
    stress_shared *sh = a->sh;
    for (int i = 0; i < sh->iters; i++) {
        int k = (a->index + i) % NIMAGES;
        char *img = ref(stress_images[k]);
        char *id = NULL, *json = NULL;
        imgsvc_error *err = NULL;
        imgsvc_status rc = imgsvc_service_pull(sh->svc, img, NULL, NULL, NULL, NULL, &id, &err);
        if (rc != IMGSVC_OK || !is_image_id(id)) {
            stress_fail(sh, "pull", img, rc, err);
        } else {
            pthread_mutex_lock(&sh->mu);
            sh->pulls++;
            if (sh->ids[k][0] == 0) snprintf(sh->ids[k], sizeof sh->ids[k], "%s", id);
            else if (strcmp(sh->ids[k], id) != 0) {
                sh->failures++;
                snprintf(sh->first_failure, sizeof sh->first_failure, "%s gave %s and %s", img, sh->ids[k], id);
            }
            pthread_mutex_unlock(&sh->mu);
        }
        drop_err(&err);
        rc = imgsvc_service_list(sh->svc, NULL, &json, &err);
        if (rc != IMGSVC_OK || !json || strncmp(json, "{\"images\":[", 11) != 0) stress_fail(sh, "list", "", rc, err);
        else {
            pthread_mutex_lock(&sh->mu);
            sh->lists++;
            pthread_mutex_unlock(&sh->mu);
        }
        imgsvc_string_free(json);
        drop_err(&err);
        json = NULL;
        /* Status may be absent: another thread may have removed it. */
        rc = imgsvc_service_status(sh->svc, img, i % 3 == 0, &json, &err);
        if (rc != IMGSVC_OK || (json && !strstr(json, "\"status\""))) stress_fail(sh, "status", img, rc, err);
        imgsvc_string_free(json);
        drop_err(&err);
        if (i % 2 == 1) {
            rc = imgsvc_service_remove(sh->svc, img, &err);
            if (rc != IMGSVC_OK) stress_fail(sh, "remove", img, rc, err);
            else {
                pthread_mutex_lock(&sh->mu);
                sh->removes++;
                pthread_mutex_unlock(&sh->mu);
            }
            drop_err(&err);
        }
        imgsvc_string_free(id);
        free(img);
    }
    return NULL;
}

static void test_eight_threads_one_service(void) {
    store s;
    if (!store_open(&s, NULL)) return;
    const char *env = getenv("IMGSVC_C_STRESS_ITERS");
    stress_shared sh = {.svc = s.svc, .iters = env ? atoi(env) : 6};
    if (sh.iters < 2) sh.iters = 2;
    pthread_mutex_init(&sh.mu, NULL);
    pthread_t threads[THREADS];
    stress_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (stress_arg){.sh = &sh, .index = i};
        pthread_create(&threads[i], NULL, stress_thread, &args[i]);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    CHECK(sh.failures == 0, "%d failures; first: %s", sh.failures, sh.first_failure);
    int calls = THREADS * sh.iters;
    CHECK(sh.pulls == calls && sh.lists == calls && sh.removes == calls / 2, "pulls %d lists %d removes %d of %d",
          sh.pulls, sh.lists, sh.removes, calls);

    /* Afterwards the store is consistent: every image pulls, lists under the
     * id the threads saw, and removes to an empty store. */
    for (int k = 0; k < NIMAGES; k++) {
        char *img = ref(stress_images[k]);
        char *id = pull(s.svc, img);
        CHECK(id && strcmp(id, sh.ids[k]) == 0, "%s: %s vs %s", img, id, sh.ids[k]);
        char *json = list_json(s.svc, img);
        CHECK(json && strstr(json, sh.ids[k]), "list %s: %s", img, json);
        imgsvc_string_free(json);
        imgsvc_string_free(id);
        free(img);
    }
    for (int k = 0; k < NIMAGES; k++) {
        imgsvc_error *err = NULL;
        imgsvc_status rc = imgsvc_service_remove(s.svc, sh.ids[k], &err);
        CHECK_CODE(rc, IMGSVC_OK, err);
        drop_err(&err);
    }
    CHECK(list_is_empty(s.svc), "images left after removing all");
    char *json = NULL;
    imgsvc_service_fs_info(s.svc, &json, NULL);
    /* Only our own files remain (the layout and metadata), no blobs. */
    char blobs[128];
    snprintf(blobs, sizeof blobs, "ls -A %s/blobs/sha256 2>/dev/null | grep -q .", s.root);
    CHECK(system(blobs) != 0, "blobs left behind in %s/blobs/sha256", s.root);
    imgsvc_string_free(json);
    pthread_mutex_destroy(&sh.mu);
    store_close(&s);
}

/* ---- registry configuration files --------------------------------------- */

/* Open a fresh store with `options_json` and pull `image`; returns the
 * status, the id in *id_out (caller frees) on success and the error message
 * in msg. */
static imgsvc_status pull_with_options(const char *options_json, const char *image, char **id_out, char *msg,
                                       size_t msg_len) {
    store s;
    if (!store_open(&s, options_json)) return -1;
    imgsvc_error *err = NULL;
    char *id = NULL;
    imgsvc_status rc = imgsvc_service_pull(s.svc, image, NULL, NULL, NULL, NULL, &id, &err);
    snprintf(msg, msg_len, "%s", imgsvc_error_message(err));
    drop_err(&err);
    if (rc == IMGSVC_OK && id_out) *id_out = id;
    else imgsvc_string_free(id);
    store_close(&s);
    return rc;
}

static void test_registry_files(void) {
    char image[128], opts[1024], msg[1024];
    snprintf(image, sizeof image, "%s/fixture/small:a", secure_addr);
    char *id = NULL;

    /* The CA from certs_dir, no credentials: the registry wants them. */
    snprintf(opts, sizeof opts, "{\"certs_dir\":\"%s/certs.d\"}", secure_dir);
    imgsvc_status rc = pull_with_options(opts, image, NULL, msg, sizeof msg);
    CHECK(rc == IMGSVC_UNAUTHENTICATED, "certs_dir only: code %d: %s", rc, msg);

    /* Credentials from auth_file, no CA: a certificate error, never HTTP. */
    snprintf(opts, sizeof opts, "{\"auth_file\":\"%s/auth.json\"}", secure_dir);
    rc = pull_with_options(opts, image, NULL, msg, sizeof msg);
    CHECK(rc == IMGSVC_UNAVAILABLE && strstr(msg, "certificate"), "auth_file only: code %d: %s", rc, msg);

    /* Both: the pull works. */
    snprintf(opts, sizeof opts, "{\"certs_dir\":\"%s/certs.d\",\"auth_file\":\"%s/auth.json\"}", secure_dir,
             secure_dir);
    rc = pull_with_options(opts, image, &id, msg, sizeof msg);
    CHECK(rc == IMGSVC_OK && is_image_id(id), "certs_dir + auth_file: code %d: %s", rc, msg);

    /* Docker's config.json instead of auth.json: the same image. */
    char *id2 = NULL;
    snprintf(opts, sizeof opts, "{\"certs_dir\":\"%s/certs.d\",\"docker_config\":\"%s/docker/config.json\"}",
             secure_dir, secure_dir);
    rc = pull_with_options(opts, image, &id2, msg, sizeof msg);
    CHECK(rc == IMGSVC_OK && id && id2 && strcmp(id, id2) == 0, "docker_config: code %d: %s", rc, msg);
    imgsvc_string_free(id2);

    /* registries.conf: a short-name alias resolves to the secure registry. */
    snprintf(opts, sizeof opts,
             "{\"registries_conf\":\"%s/registries.conf\",\"certs_dir\":\"%s/certs.d\",\"auth_file\":\"%s/auth.json\"}",
             secure_dir, secure_dir, secure_dir);
    store s;
    if (store_open(&s, opts)) {
        imgsvc_error *err = NULL;
        char *alias_id = NULL;
        rc = imgsvc_service_pull(s.svc, "securesmall:a", NULL, NULL, NULL, NULL, &alias_id, &err);
        CHECK_CODE(rc, IMGSVC_OK, err);
        drop_err(&err);
        CHECK(alias_id && id && strcmp(alias_id, id) == 0, "alias pulled %s, want %s", alias_id, id);
        /* Status by the short name finds it under the name it resolved to. */
        char *json = NULL;
        rc = imgsvc_service_status(s.svc, "securesmall:a", false, &json, &err);
        CHECK_CODE(rc, IMGSVC_OK, err);
        drop_err(&err);
        char tag[160];
        snprintf(tag, sizeof tag, "\"repoTags\":[\"%s\"]", image);
        CHECK(json && strstr(json, tag), "status securesmall:a: %s", json ? json : "(null)");
        imgsvc_string_free(json);
        imgsvc_string_free(alias_id);
        store_close(&s);
    }
    imgsvc_string_free(id);
}

static void test_registry_files_refused(void) {
    imgsvc_service *svc = NULL;
    imgsvc_error *err = NULL;
    /* A registries.conf that is not there. */
    imgsvc_status rc = imgsvc_service_open("/tmp/imgsvc-capi-conf-test",
                                           "{\"registries_conf\":\"/nonexistent/registries.conf\"}", &svc, &err);
    CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err);
    CHECK(strstr(imgsvc_error_message(err), "/nonexistent/registries.conf"), "%s", imgsvc_error_message(err));
    CHECK(svc == NULL, "service made");
    drop_err(&err);

    /* One that is not valid TOML: the file and the line are named. */
    char dir[] = "/tmp/imgsvc-capi-conf.XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(false, "mkdtemp");
        return;
    }
    char conf[128], opts[256];
    snprintf(conf, sizeof conf, "%s/registries.conf", dir);
    FILE *f = fopen(conf, "w");
    fputs("unqualified-search-registries = [\"docker.io\"]\n[aliases\n", f);
    fclose(f);
    snprintf(opts, sizeof opts, "{\"registries_conf\":\"%s\"}", conf);
    rc = imgsvc_service_open(dir, opts, &svc, &err);
    CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err);
    CHECK(strstr(imgsvc_error_message(err), conf) && strstr(imgsvc_error_message(err), "line 2"), "%s",
          imgsvc_error_message(err));
    drop_err(&err);
    imgsvc_service_free(svc);
    rm_rf(dir);
    rm_rf("/tmp/imgsvc-capi-conf-test");
}

/* ---- fsck ----------------------------------------------------------------- */

/* The fsck report as JSON (caller frees), or NULL after a failed check. */
static char *fsck_json(const imgsvc_service *svc, bool repair) {
    char *json = NULL;
    imgsvc_error *err = NULL;
    imgsvc_status rc = imgsvc_service_fsck(svc, repair, &json, &err);
    CHECK_CODE(rc, IMGSVC_OK, err);
    drop_err(&err);
    return json;
}

/* sha256 of a file as "sha256:<hex>", by sha256sum(1). */
static bool file_digest(const char *path, char out[72]) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
    FILE *p = popen(cmd, "r");
    if (!p) return false;
    char hex[65] = {0};
    bool ok = fscanf(p, "%64s", hex) == 1 && strlen(hex) == 64;
    pclose(p);
    snprintf(out, 72, "sha256:%s", hex);
    return ok;
}

static int32_t record_layer(void *userdata, const imgsvc_progress *ev) {
    char *digest = userdata; /* the last blob that was downloaded */
    if (ev->kind == IMGSVC_PROGRESS_LAYER_DONE) snprintf(digest, 72, "%s", ev->digest);
    return 0;
}

static int count_blobs(const char *root) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls %s/blobs/sha256 | wc -l", root);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

static void test_fsck(void) {
    store s;
    if (!store_open(&s, NULL)) return;
    char *json = fsck_json(s.svc, false);
    CHECK(json && strcmp(json, "{\"clean\":true,\"problems\":[],\"repaired\":[],\"remaining\":[],\"blobsChecked\":0}") == 0,
          "empty store: %s", json);
    imgsvc_string_free(json);

    char *img = ref("fixture/debian:v1");
    char layer[72] = {0};
    char *id = NULL;
    imgsvc_error *err = NULL;
    imgsvc_status rc = imgsvc_service_pull(s.svc, img, NULL, record_layer, layer, NULL, &id, &err);
    CHECK_CODE(rc, IMGSVC_OK, err);
    drop_err(&err);
    if (rc != IMGSVC_OK) goto out;

    /* Clean: every blob in the store verified. */
    char want[256];
    snprintf(want, sizeof want, "\"blobsChecked\":%d}", count_blobs(s.root));
    json = fsck_json(s.svc, false);
    CHECK(json && strncmp(json, "{\"clean\":true,\"problems\":[]", 27) == 0 && strstr(json, want), "clean: %s (want %s)",
          json, want);
    imgsvc_string_free(json);

    /* Flip one byte of a layer: same size, other content. */
    CHECK(strncmp(layer, "sha256:", 7) == 0 && strcmp(layer, id) != 0, "layer %s", layer);
    char path[256];
    snprintf(path, sizeof path, "%s/blobs/sha256/%s", s.root, layer + 7);
    chmod(path, 0644);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL, "open %s", path);
    if (!f) goto out;
    fseek(f, 100, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 100, SEEK_SET);
    fputc(c ^ 0xff, f);
    fclose(f);
    char actual[72];
    CHECK(file_digest(path, actual), "sha256sum %s", path);

    /* Reported precisely: which blob, what it hashes to, which image. */
    char corrupt[256], incomplete[128];
    snprintf(corrupt, sizeof corrupt, "\"blob %s is corrupt: its content hashes to %s\"", layer, actual);
    snprintf(incomplete, sizeof incomplete, "\"image %s is incomplete\"", id);
    json = fsck_json(s.svc, false);
    CHECK(json && strncmp(json, "{\"clean\":false,", 15) == 0 && strstr(json, corrupt) && strstr(json, incomplete) &&
              strstr(json, "\"repaired\":[]"),
          "corrupt: %s", json);
    imgsvc_string_free(json);
    CHECK(access(path, F_OK) == 0, "a check without repair deleted the blob");

    /* Repair: the corrupt blob and the image go; the store is clean. */
    char deleted[128];
    snprintf(deleted, sizeof deleted, "\"deleted corrupt blob %s\"", layer);
    json = fsck_json(s.svc, true);
    CHECK(json && strncmp(json, "{\"clean\":true,", 14) == 0 && strstr(json, corrupt) && strstr(json, deleted) &&
              strstr(json, "\"remaining\":[]"),
          "repair: %s", json);
    imgsvc_string_free(json);
    CHECK(list_is_empty(s.svc), "the incomplete image is still listed");
    json = fsck_json(s.svc, false);
    CHECK(json && strncmp(json, "{\"clean\":true,\"problems\":[]", 27) == 0, "after repair: %s", json);
    imgsvc_string_free(json);

    /* The next pull fetches it again. */
    char *again = pull(s.svc, img);
    CHECK(again && strcmp(again, id) == 0, "pull after repair: %s", again);
    imgsvc_string_free(again);
out:
    imgsvc_string_free(id);
    free(img);
    store_close(&s);
}

/* ---- a full disk ---------------------------------------------------------- */

/* In a child whose files may not grow past 256 KiB (RLIMIT_FSIZE, SIGXFSZ
 * ignored: writes fail with EFBIG, as on a full disk): pull the Debian image.
 * Exit 0 when the pull failed with IMGSVC_STORAGE_FULL and left no image. */
static int storage_full_child(const char *root, const char *image) {
    imgsvc_service *svc = NULL;
    imgsvc_error *err = NULL;
    if (imgsvc_service_open(root, NULL, &svc, &err) != IMGSVC_OK) {
        fprintf(stderr, "  open: %s\n", imgsvc_error_message(err));
        return 3;
    }
    char *id = NULL;
    imgsvc_status rc = imgsvc_service_pull(svc, image, NULL, NULL, NULL, NULL, &id, &err);
    int result = 0;
    if (rc != IMGSVC_STORAGE_FULL) {
        fprintf(stderr, "  pull: code %d (%s): %s\n", rc, imgsvc_status_name(rc), imgsvc_error_message(err));
        result = 1;
    }
    char *json = NULL;
    if (imgsvc_service_list(svc, NULL, &json, NULL) != IMGSVC_OK || !json || strcmp(json, "{\"images\":[]}") != 0) {
        fprintf(stderr, "  list after a full disk: %s\n", json ? json : "(failed)");
        result = 2;
    }
    imgsvc_string_free(json);
    imgsvc_string_free(id);
    imgsvc_error_free(err);
    imgsvc_service_free(svc);
    return result;
}

static void test_storage_full(void) {
    char root[] = "/tmp/imgsvc-capi-full.XXXXXX";
    if (!mkdtemp(root)) {
        CHECK(false, "mkdtemp");
        return;
    }
    char *img = ref("fixture/debian:v1");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        struct rlimit limit = {.rlim_cur = 256 * 1024, .rlim_max = 256 * 1024};
        setrlimit(RLIMIT_FSIZE, &limit);
        signal(SIGXFSZ, SIG_IGN);
        execl(self_path, self_path, "--storage-full-child", root, img, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork/wait");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);

    /* The store is intact: it opens, lists nothing, and takes the image now. */
    imgsvc_service *svc = NULL;
    imgsvc_error *err = NULL;
    imgsvc_status rc = imgsvc_service_open(root, NULL, &svc, &err);
    CHECK_CODE(rc, IMGSVC_OK, err);
    drop_err(&err);
    if (rc == IMGSVC_OK) {
        CHECK(list_is_empty(svc), "an image after the failed pull");
        char *id = pull(svc, img);
        CHECK(is_image_id(id), "pull without the limit: %s", id);
        imgsvc_string_free(id);
    }
    imgsvc_service_free(svc);
    free(img);
    rm_rf(root);
}

/* ---- huge strings ----------------------------------------------------------- */

static void test_huge_strings(void) {
    const char *env = getenv("IMGSVC_C_HUGE_MB");
    size_t mb = env ? (size_t)atol(env) : 100;
    if (mb < 1) mb = 1;
    size_t n = mb * 1024 * 1024;
    char *huge = malloc(n + 1);
    if (!huge) {
        CHECK(false, "malloc %zu", n);
        return;
    }
    memset(huge, 'x', n);
    huge[n] = 0;
    store s;
    if (!store_open(&s, NULL)) {
        free(huge);
        return;
    }
    double start = now_s();
    char *out = (char *)0x1;
    imgsvc_error *err = NULL;
    imgsvc_status rc = imgsvc_service_pull(s.svc, huge, NULL, NULL, NULL, NULL, &out, &err);
    CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err);
    CHECK(strncmp(imgsvc_error_message(err), "invalid image reference", 23) == 0, "pull: %.80s",
          imgsvc_error_message(err));
    drop_err(&err);
    rc = imgsvc_service_status(s.svc, huge, true, &out, &err);
    CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err);
    drop_err(&err);
    rc = imgsvc_service_list(s.svc, huge, &out, &err);
    CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err);
    drop_err(&err);
    rc = imgsvc_service_remove(s.svc, huge, &err);
    CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err);
    drop_err(&err);
    rc = imgsvc_service_untag(s.svc, huge, &err);
    CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err);
    drop_err(&err);
    CHECK(out == (char *)0x1, "out-pointer written on failure");

    /* A huge tag on a real repository, and huge credentials. */
    char *img = ref("fixture/small:");
    size_t img_len = strlen(img);
    char *long_tag = malloc(img_len + n + 1);
    memcpy(long_tag, img, img_len);
    memcpy(long_tag + img_len, huge, n + 1);
    rc = imgsvc_service_pull(s.svc, long_tag, NULL, NULL, NULL, NULL, &out, &err);
    CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err);
    const char *msg = imgsvc_error_message(err);
    size_t msg_len = strlen(msg);
    CHECK(strstr(msg, "tag is longer than"), "...%s", msg + (msg_len > 120 ? msg_len - 120 : 0));
    drop_err(&err);
    free(long_tag);
    free(img);
    char *auth = malloc(n + 32);
    snprintf(auth, n + 32, "{\"auth\":\"%s\"}", huge);
    img = ref("fixture/small:a");
    rc = imgsvc_service_pull(s.svc, img, auth, NULL, NULL, NULL, &out, &err);
    CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err); /* not base64 of user:password */
    CHECK(strlen(imgsvc_error_message(err)) < 200, "the message repeats the credentials");
    drop_err(&err);
    free(auth);
    free(img);
    CHECK(list_is_empty(s.svc), "an image appeared");

    /* A huge root: the directory cannot be made. */
    char *root = malloc(n + 8);
    snprintf(root, n + 8, "/tmp/%s", huge);
    imgsvc_service *svc = NULL;
    rc = imgsvc_service_open(root, NULL, &svc, &err);
    CHECK((rc == IMGSVC_IO || rc == IMGSVC_INVALID_ARGUMENT) && svc == NULL, "open with a huge root: %d", rc);
    drop_err(&err);
    free(root);
    double took = now_s() - start;
    CHECK(took < 60, "took %.1f s", took);
    free(huge);
    store_close(&s);
}

/* rootfs lists the layer directories top first; export writes a tree a
 * program can read; NULLs and an absent image are errors, not crashes. */
static void test_rootfs_and_export(void) {
    store s;
    if (!store_open(&s, "{\"unpack\":false}")) return;
    char *image = ref("fixture/small:a");
    char *id = pull(s.svc, image);
    imgsvc_error *err = NULL;
    char *dirs = NULL;
    imgsvc_status rc = imgsvc_service_rootfs(s.svc, image, &dirs, &err);
    CHECK_CODE(rc, IMGSVC_OK, err);
    drop_err(&err);
    char layers_dir[128];
    snprintf(layers_dir, sizeof layers_dir, "\"%s/layers/sha256/", s.root);
    CHECK(dirs && dirs[0] == '[' && strstr(dirs, layers_dir), "rootfs: %s", dirs ? dirs : "(null)");
    imgsvc_string_free(dirs);

    char dest[160];
    snprintf(dest, sizeof dest, "%s-export", s.root);
    rc = imgsvc_service_export_rootfs(s.svc, image, dest, &err);
    CHECK_CODE(rc, IMGSVC_OK, err);
    drop_err(&err);
    DIR *d = opendir(dest);
    int entries = 0;
    for (struct dirent *e; d && (e = readdir(d));) entries += e->d_name[0] != '.';
    if (d) closedir(d);
    CHECK(entries > 0, "export wrote nothing into %s", dest);
    rc = imgsvc_service_export_rootfs(s.svc, image, dest, &err);
    CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err); /* not empty any more */
    drop_err(&err);

    rc = imgsvc_service_rootfs(s.svc, "fixture/absent:x", &dirs, &err);
    CHECK_CODE(rc, IMGSVC_NOT_FOUND, err);
    drop_err(&err);
    rc = imgsvc_service_rootfs(s.svc, image, NULL, &err);
    CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err);
    drop_err(&err);
    rc = imgsvc_service_export_rootfs(s.svc, image, NULL, &err);
    CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err);
    drop_err(&err);
    rc = imgsvc_service_export_rootfs(NULL, image, dest, &err);
    CHECK_CODE(rc, IMGSVC_INVALID_ARGUMENT, err);
    drop_err(&err);
    rm_rf(dest);
    imgsvc_string_free(id);
    free(image);
    store_close(&s);
}

int main(int argc, char **argv) {
    self_path = argv[0];
    if (argc == 4 && strcmp(argv[1], "--storage-full-child") == 0) return storage_full_child(argv[2], argv[3]);
    registry = getenv("IMGSVC_TEST_REGISTRY");
    secure_dir = getenv("IMGSVC_TEST_SECURE_DIR");
    if (!registry || !*registry || !secure_dir || !*secure_dir) {
        fprintf(stderr, "test_capi: set IMGSVC_TEST_REGISTRY=host:port (a registry with the fixtures) and\n"
                        "IMGSVC_TEST_SECURE_DIR=DIR (tests/c/secure-registry.sh start DIR $IMGSVC_TEST_REGISTRY)\n");
        return 2;
    }
    char addr_file[512];
    snprintf(addr_file, sizeof addr_file, "%s/addr", secure_dir);
    FILE *f = fopen(addr_file, "r");
    if (!f || fscanf(f, "%63s", secure_addr) != 1) {
        fprintf(stderr, "test_capi: cannot read %s\n", addr_file);
        return 2;
    }
    fclose(f);
    run("version and status names", test_version_and_names);
    run("NULL arguments are invalid arguments", test_null_arguments);
    run("invalid UTF-8 is an invalid argument", test_invalid_utf8);
    run("options: bad ones refused, every key accepted", test_options);
    run("bad reference is code 1", test_bad_reference);
    run("missing tag is code 2", test_missing_tag_is_not_found);
    run("absent status is NULL, remove of absent succeeds", test_absent_status_and_remove);
    run("pull, list, status, short id prefix, fs_info, remove", test_pull_list_status_prefix_fsinfo);
    run("untag", test_untag);
    run("rootfs and export_rootfs (unpacked on demand)", test_rootfs_and_export);
    run("cancel token from another thread", test_cancel_token);
    run("cancel token with no bytes flowing", test_cancel_with_no_bytes_flowing);
    run("callback cancel is code 10 and leaves no image", test_callback_cancel);
    run("8 threads pull, list, status and remove on one service", test_eight_threads_one_service);
    run("registry files: certs_dir, auth_file, docker_config, registries.conf alias", test_registry_files);
    run("a missing or invalid registries.conf is refused with file and line", test_registry_files_refused);
    run("fsck reports a corrupt blob precisely and repairs the store", test_fsck);
    run("a full disk is code 8 and leaves the store intact", test_storage_full);
    run("huge strings are invalid arguments, not crashes", test_huge_strings);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
