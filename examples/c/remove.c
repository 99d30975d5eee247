/*
 * remove: remove images (with all their names), or drop one name.
 *
 *   remove ROOT IMAGE...          remove each image; absent ones are fine
 *   remove ROOT --untag NAME      drop NAME; the image goes with its last name
 */
#include <imgsvc.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[2], "--untag") == 0 && argc != 4)) {
        fprintf(stderr, "usage: %s ROOT IMAGE... | %s ROOT --untag NAME\n", argv[0], argv[0]);
        return 2;
    }
    imgsvc_service *svc = NULL;
    imgsvc_error *err = NULL;
    if (imgsvc_service_open(argv[1], NULL, &svc, &err) != IMGSVC_OK) {
        fprintf(stderr, "open %s: %s\n", argv[1], imgsvc_error_message(err));
        imgsvc_error_free(err);
        return 1;
    }
    int failures = 0;
    if (strcmp(argv[2], "--untag") == 0) {
        if (imgsvc_service_untag(svc, argv[3], &err) != IMGSVC_OK) {
            fprintf(stderr, "untag %s: %s\n", argv[3], imgsvc_error_message(err));
            imgsvc_error_free(err);
            failures++;
        }
    } else {
        for (int i = 2; i < argc; i++) {
            err = NULL;
            if (imgsvc_service_remove(svc, argv[i], &err) != IMGSVC_OK) {
                fprintf(stderr, "remove %s: %s\n", argv[i], imgsvc_error_message(err));
                imgsvc_error_free(err);
                failures++;
            } else {
                printf("removed %s\n", argv[i]);
            }
        }
    }
    imgsvc_service_free(svc);
    return failures ? 1 : 0;
}
