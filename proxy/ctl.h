/*
 * proxy/ctl.h — `tollgate ctl COMMAND`: the admin client built into the
 * binary, so operators need no curl recipes. It reads only the admin
 * section of the config file (address and token; the rest of the file is
 * not checked, so a gateway stays reachable while its file is broken),
 * sends one request to the admin listener and prints the answer.
 *
 * Exit status: 0 done; 1 the gateway answered with a failure (a reload it
 * refused, not ready); 2 usage or a config without an admin listener;
 * 3 the admin listener could not be reached.
 */
#ifndef TG_PROXY_CTL_H
#define TG_PROXY_CTL_H

#include <stdio.h>

/* argv[0] is the command (reload, config, health, endpoints, status). */
int tg_ctl_main(const char *config_path, int argc, char **argv);

/* Prints one JSON document indented, two spaces a level (for people). */
void tg_ctl_print_json(FILE *f, const char *json);

#endif
