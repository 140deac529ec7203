/* test_config.c - INI parsing, errors with file:line, overrides, the example file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"

static void test_defaults(void **state)
{
    (void)state;
    struct foliod_config cfg;
    assert_true(config_init(&cfg));
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 7443);
    assert_int_equal(cfg.max_frame, 65536);
    assert_int_equal(cfg.tls_verify_client, CONFIG_VERIFY_OPTIONAL);
    assert_true(cfg.log_access);
    config_free(&cfg);
}

static void test_parse_values(void **state)
{
    (void)state;
    struct foliod_config cfg;
    char err[256];
    assert_true(config_init(&cfg));
    const char *text = "; comment\n"
                       "# another\n"
                       "[server]\n"
                       "  listen_port = 8000   ; trailing comment\n"
                       "max_frame=2048\n"
                       "[tls]\n"
                       "verify_client = REQUIRE\n"
                       "cert_file = \" /path with spaces \"\n"
                       "[log]\n"
                       "access = no\n"
                       "[database]\n"
                       "conninfo = host=/tmp port=5432 dbname=x#notacomment\n";
    assert_true(config_parse_text(&cfg, text, "t.conf", err, sizeof(err)));
    assert_int_equal(cfg.listen_port, 8000);
    assert_int_equal(cfg.max_frame, 2048);
    assert_int_equal(cfg.tls_verify_client, CONFIG_VERIFY_REQUIRE);
    assert_string_equal(cfg.tls_cert_file, " /path with spaces ");
    assert_false(cfg.log_access);
    assert_string_equal(cfg.db_conninfo, "host=/tmp port=5432 dbname=x#notacomment");
    config_free(&cfg);
}

static void expect_error(const char *text, const char *want)
{
    struct foliod_config cfg;
    char err[256];
    assert_true(config_init(&cfg));
    assert_false(config_parse_text(&cfg, text, "f.conf", err, sizeof(err)));
    if (strstr(err, want) == NULL)
        fail_msg("error '%s' does not contain '%s'", err, want);
    config_free(&cfg);
}

static void test_errors_name_file_and_line(void **state)
{
    (void)state;
    expect_error("[server]\nlisten_port = 0\n", "f.conf:2: server.listen_port: 0 is outside");
    expect_error("[server]\n\nlisten_port = 12x\n", "f.conf:3:");
    expect_error("[nope]\n", "f.conf:1: unknown section [nope]");
    expect_error("[server]\nbogus = 1\n", "f.conf:2: unknown key 'bogus' in [server]");
    expect_error("listen_port = 1\n", "f.conf:1: key 'listen_port' outside any [section]");
    expect_error("[server\n", "f.conf:1: malformed section header");
    expect_error("[server]\nlisten_port\n", "f.conf:2: expected 'key = value'");
    expect_error("[log]\naccess = maybe\n", "f.conf:2: log.access: 'maybe' is not yes or no");
    expect_error("[tls]\nverify_client = sometimes\n", "f.conf:2:");
    expect_error("[tls]\ncert_file = \"unterminated\n", "f.conf:2: unterminated quoted value");
    expect_error("[server]\nlisten_port = 99999999999999999999\n", "f.conf:2:");
}

static void test_overrides_and_validation(void **state)
{
    (void)state;
    struct foliod_config cfg;
    char err[256];
    assert_true(config_init(&cfg));
    assert_true(config_apply_override(&cfg, "server.listen_port=7500", err, sizeof(err)));
    assert_int_equal(cfg.listen_port, 7500);
    assert_false(config_apply_override(&cfg, "server.nothing=1", err, sizeof(err)));
    assert_non_null(strstr(err, "unknown key"));
    assert_false(config_apply_override(&cfg, "listen_port=1", err, sizeof(err)));
    assert_true(config_apply_override(&cfg, "database.reconnect_min=9000", err, sizeof(err)));
    assert_false(config_validate(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "reconnect_min"));
    config_free(&cfg);

    char *ov[] = {(char *)"log.level=loud"};
    assert_false(config_load(&cfg, NULL, ov, 1, err, sizeof(err)));
    assert_non_null(strstr(err, "log.level"));
}

static void test_reload_rules(void **state)
{
    (void)state;
    struct foliod_config a, b;
    char out[256];
    assert_true(config_init(&a));
    assert_true(config_init(&b));
    config_unreloadable_changes(&a, &b, out, sizeof(out));
    assert_string_equal(out, "");
    char err[128];
    assert_true(config_apply_override(&b, "server.listen_port=1234", err, sizeof(err)));
    assert_true(config_apply_override(&b, "server.idle_timeout=5", err, sizeof(err)));
    assert_true(config_apply_override(&b, "database.conninfo=dbname=other", err, sizeof(err)));
    config_unreloadable_changes(&a, &b, out, sizeof(out));
    assert_string_equal(out, "server.listen_port, database.conninfo");
    config_free(&a);
    config_free(&b);
}

/* The documented example must list every key with its default, and parse. */
static void test_example_file_documents_every_key(void **state)
{
    (void)state;
    FILE *f = fopen("etc/foliod.conf", "r");
    assert_non_null(f);
    static char text[65536];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';

    struct foliod_config cfg, def;
    char err[256];
    assert_true(config_init(&cfg));
    assert_true(config_parse_text(&cfg, text, "etc/foliod.conf", err, sizeof(err)));
    assert_true(config_init(&def));
    size_t count;
    const struct config_key *keys = config_keys(&count);
    char section[64] = "";
    for (size_t i = 0; i < count; i++) {
        /* find "key = default" inside the right section */
        char want[256];
        snprintf(want, sizeof(want), "\n%s = %s\n", keys[i].name, keys[i].default_value);
        char header[80];
        snprintf(header, sizeof(header), "[%s]", keys[i].section);
        const char *sec = strstr(text, header);
        if (sec == NULL)
            fail_msg("etc/foliod.conf has no section %s", header);
        const char *next = strstr(sec + 1, "\n[");
        const char *hit = strstr(sec, want);
        if (hit == NULL || (next != NULL && hit > next))
            fail_msg("etc/foliod.conf does not document %s.%s = %s", keys[i].section,
                     keys[i].name, keys[i].default_value);
        (void)section;
    }
    /* and the file's values are the defaults */
    char diff[512];
    config_unreloadable_changes(&cfg, &def, diff, sizeof(diff));
    assert_string_equal(diff, "");
    config_free(&cfg);
    config_free(&def);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_parse_values),
        cmocka_unit_test(test_errors_name_file_and_line),
        cmocka_unit_test(test_overrides_and_validation),
        cmocka_unit_test(test_reload_rules),
        cmocka_unit_test(test_example_file_documents_every_key),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
