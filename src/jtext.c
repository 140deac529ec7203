/*
 * jtext.c - walking the text of JSON that PostgreSQL wrote (see jtext.h).
 */
#include "jtext.h"

#include <string.h>

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static size_t skip_space(const char *s, size_t len, size_t i)
{
    while (i < len && is_space(s[i]))
        i++;
    return i;
}

/* One past the closing quote of the string whose opening quote is s[i]; 0 if it is not closed. */
static size_t string_end(const char *s, size_t len, size_t i)
{
    for (size_t j = i + 1; j < len; j++) {
        if (s[j] == '\\')
            j++; /* the escaped character; past the end means not closed */
        else if (s[j] == '"')
            return j + 1;
    }
    return 0;
}

size_t jtext_value_end(const char *s, size_t len, size_t i)
{
    if (i >= len)
        return 0;
    char c = s[i];
    if (c == '"')
        return string_end(s, len, i);
    if (c == '{' || c == '[') {
        size_t depth = 0;
        for (size_t j = i; j < len; j++) {
            if (s[j] == '"') {
                size_t e = string_end(s, len, j);
                if (e == 0)
                    return 0;
                j = e - 1;
            } else if (s[j] == '{' || s[j] == '[') {
                depth++;
            } else if (s[j] == '}' || s[j] == ']') {
                if (--depth == 0)
                    return j + 1;
            }
        }
        return 0;
    }
    size_t j = i;
    while (j < len && s[j] != '\0' && !is_space(s[j]) && strchr(",:[]{}\"", s[j]) == NULL)
        j++;
    return j > i ? j : 0;
}

bool jtext_array_open(struct jtext_array *a, const char *s, size_t len)
{
    size_t i = skip_space(s, len, 0);
    a->s = s;
    a->len = len;
    a->n = 0;
    a->done = false;
    a->bad = i >= len || s[i] != '[';
    a->pos = a->bad ? len : i + 1;
    return !a->bad;
}

bool jtext_array_next(struct jtext_array *a, size_t *start, size_t *end)
{
    if (a->bad || a->done)
        return false;
    size_t i = skip_space(a->s, a->len, a->pos);
    if (i < a->len && a->s[i] == ']') {
        a->done = true;
        a->bad = skip_space(a->s, a->len, i + 1) != a->len;
        return false;
    }
    if (a->n > 0) {
        if (i >= a->len || a->s[i] != ',') {
            a->bad = true;
            return false;
        }
        i = skip_space(a->s, a->len, i + 1);
    }
    size_t e = jtext_value_end(a->s, a->len, i);
    if (e <= i) {
        a->bad = true;
        return false;
    }
    *start = i;
    *end = e;
    a->pos = e;
    a->n++;
    return true;
}

bool jtext_ok_member(const char *s, size_t len, size_t *vstart, size_t *vend)
{
    size_t i = skip_space(s, len, 0);
    if (i >= len || s[i] != '{')
        return false;
    i = skip_space(s, len, i + 1);
    if (len - i < 4 || memcmp(s + i, "\"ok\"", 4) != 0)
        return false;
    i = skip_space(s, len, i + 4);
    if (i >= len || s[i] != ':')
        return false;
    i = skip_space(s, len, i + 1);
    size_t e = jtext_value_end(s, len, i);
    if (e <= i)
        return false;
    size_t k = skip_space(s, len, e);
    if (k >= len || s[k] != '}' || skip_space(s, len, k + 1) != len)
        return false;
    *vstart = i;
    *vend = e;
    return true;
}

bool jtext_has_long_number(const char *s, size_t len)
{
    size_t digits = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"') {
            size_t e = string_end(s, len, i);
            if (e == 0)
                return false;
            i = e - 1;
            digits = 0;
        } else if (s[i] >= '0' && s[i] <= '9') {
            if (++digits >= JTEXT_LONG_DIGITS)
                return true;
        } else {
            digits = 0;
        }
    }
    return false;
}
