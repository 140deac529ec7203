/* test_auth.c - scrypt password hashes, malformed hashes, password members, roles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "auth.h"

static const struct auth_kdf_params fast = {10, 8, 1};

static void test_hash_and_verify(void **state)
{
    (void)state;
    char h1[AUTH_HASH_MAX], h2[AUTH_HASH_MAX];
    assert_true(auth_hash_password("s3cret pass", &fast, h1, sizeof(h1)));
    assert_true(auth_hash_password("s3cret pass", &fast, h2, sizeof(h2)));
    assert_memory_equal(h1, "$scrypt$ln=10,r=8,p=1$", 22);
    /* salted: the same password never gives the same hash */
    assert_string_not_equal(h1, h2);
    assert_true(auth_verify_password("s3cret pass", h1));
    assert_true(auth_verify_password("s3cret pass", h2));
    assert_false(auth_verify_password("s3cret pasS", h1));
    assert_false(auth_verify_password("", h1));
}

static void test_malformed_hashes_never_verify(void **state)
{
    (void)state;
    char h[AUTH_HASH_MAX];
    assert_true(auth_hash_password("x", &fast, h, sizeof(h)));
    const char *bad[] = {
        "",
        "plain",
        "$scrypt$ln=10,r=8,p=1$",
        "$scrypt$ln=99,r=8,p=1$AAECAwQFBgcICQoLDA0ODw==$q3yGxk7Jw0cF1mH0l3b0Xw8f0oKzT6bJr0GJ4dMZrHs=",
        "$scrypt$ln=10,r=8,p=1$!!!!$q3yGxk7Jw0cF1mH0l3b0Xw8f0oKzT6bJr0GJ4dMZrHs=",
        "$bcrypt$whatever",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(auth_verify_password("x", bad[i]));
    /* a truncated or extended real hash fails too */
    char t[AUTH_HASH_MAX + 8];
    snprintf(t, sizeof(t), "%.*s", (int)strlen(h) - 4, h);
    assert_false(auth_verify_password("x", t));
    snprintf(t, sizeof(t), "%sAAAA", h);
    assert_false(auth_verify_password("x", t));
}

static void test_dummy_hash_is_well_formed(void **state)
{
    (void)state;
    /* it parses and runs the KDF (same cost as a real check) but matches nothing guessable */
    assert_false(auth_verify_password("", auth_dummy_hash()));
    assert_false(auth_verify_password("admin", auth_dummy_hash()));
}

static void test_password_members(void **state)
{
    (void)state;
    json_t *doc = json_pack("{s:s, s:[{s:s, s:s}, {s:s}, {s:s, s:s}]}", "password", "top",
                            "users", "username", "a", "password", "pa", "username", "b",
                            "username", "c", "password", "pc");
    assert_int_equal(auth_password_slots(doc, NULL, 0), 3);
    char err[64];
    assert_true(auth_hash_members_blocking(doc, &fast, err, sizeof(err)));
    assert_null(json_object_get(doc, "password"));
    assert_true(auth_verify_password("top", json_string_value(json_object_get(doc, "password_hash"))));
    json_t *users = json_object_get(doc, "users");
    assert_true(auth_verify_password(
        "pa", json_string_value(json_object_get(json_array_get(users, 0), "password_hash"))));
    assert_null(json_object_get(json_array_get(users, 1), "password_hash"));
    assert_true(auth_verify_password(
        "pc", json_string_value(json_object_get(json_array_get(users, 2), "password_hash"))));
    assert_int_equal(auth_password_slots(doc, NULL, 0), 0);
    json_decref(doc);
}

static void test_roles(void **state)
{
    (void)state;
    enum auth_role r;
    for (int i = 0; i < ROLE_MAX; i++) {
        assert_true(auth_role_parse(auth_role_str((enum auth_role)i), &r));
        assert_int_equal(r, i);
    }
    assert_false(auth_role_parse("root", &r));
    assert_false(auth_role_parse("Cashier", &r));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_and_verify),
        cmocka_unit_test(test_malformed_hashes_never_verify),
        cmocka_unit_test(test_dummy_hash_is_well_formed),
        cmocka_unit_test(test_password_members),
        cmocka_unit_test(test_roles),
    };
    return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
