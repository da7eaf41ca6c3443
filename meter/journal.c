/*
 * The gateway's local journal, so that a kill -9 loses no finished request's record.
 * Records are appended, one JSON line each, to the current segment (rec-<n>.log) before
 * they are aggregated. When the shipper forms a batch it rotates the segment under the
 * meter lock, writes the batch (id and body) to b-<counter>.json (write, fsync, rename,
 * fsync of the directory) and only then deletes the old segment. A batch file is deleted
 * once its id is in PostgreSQL's applied_batches. At start, leftover batch files are
 * re-shipped (the flusher deduplicates) and leftover segments become a new batch.
 * Not thread-safe: the meter serialises calls (records under its lock, the rest on the
 * shipper thread).
 */
#include "meter/meter_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct meter_journal {
    char dir[CM_URL_MAX];
    int dir_fd, lock_fd, seg_fd;
    uint64_t segment;      /* number of the current record segment */
    uint64_t next_batch;   /* counter for the next batch file name */
    bool dirty;            /* appended since the last sync */
    uint64_t bytes;        /* everything in the directory (segments and batches) */
    uint64_t seg_bytes, old_seg_bytes; /* the current and the last rotated segment */
    uint64_t max_bytes;    /* appends stop here (0: no limit) */
    char *scratch;         /* the lines of the records being appended */
    size_t scratch_cap;
};

#define RECORD_LINE_MAX 4096

/* "<dir>/<prefix><n, 20 digits><suffix>": file names sort in creation order. */
static int path(const struct meter_journal *j, char *out, size_t len, const char *prefix,
                uint64_t n, const char *suffix)
{
    return cm_fmt(out, len, "%s/%s%020" PRIu64 "%s", j->dir, prefix, n, suffix);
}

static int open_segment(struct meter_journal *j, char *err, size_t errlen)
{
    char p[CM_URL_MAX + 64];
    path(j, p, sizeof p, "rec-", j->segment, ".log");
    j->seg_fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (j->seg_fd < 0)
        return cm_fmt(err, errlen, "cannot write the journal %s: %s", p, strerror(errno)),
               CM_ERR;
    /* The directory entry reaches the disk with the next batch's directory fsync (or the
     * segment's own sync): no fsync here, which runs under the meter's lock. */
    return CM_OK;
}

/* Highest number n of files named prefix<n>suffix in the directory, 0 when none. */
static uint64_t highest(const struct meter_journal *j, const char *prefix)
{
    DIR *d = opendir(j->dir);
    uint64_t max = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        size_t pl = strlen(prefix);
        if (strncmp(e->d_name, prefix, pl) != 0)
            continue;
        uint64_t n = strtoull(e->d_name + pl, NULL, 10);
        if (n > max)
            max = n;
    }
    if (d != NULL)
        closedir(d);
    return max;
}

/* Sum of the sizes of the journal's files (once, at open). */
static uint64_t directory_bytes(const struct meter_journal *j)
{
    DIR *d = opendir(j->dir);
    struct dirent *e;
    uint64_t total = 0;
    while (d != NULL && (e = readdir(d)) != NULL) {
        struct stat st;
        if (e->d_name[0] != '.' && fstatat(j->dir_fd, e->d_name, &st, 0) == 0 &&
            S_ISREG(st.st_mode))
            total += (uint64_t)st.st_size;
    }
    if (d != NULL)
        closedir(d);
    return total;
}

struct meter_journal *meter_journal_open(const char *dir, uint64_t max_bytes, char *err,
                                         size_t errlen)
{
    struct meter_journal *j = calloc(1, sizeof *j);
    if (j == NULL)
        return cm_fmt(err, errlen, "out of memory"), NULL;
    j->dir_fd = j->lock_fd = j->seg_fd = -1;
    cm_copy(j->dir, sizeof j->dir, dir);
    char lock[CM_URL_MAX + 16];
    cm_fmt(lock, sizeof lock, "%s/lock", dir);
    if ((mkdir(dir, 0700) != 0 && errno != EEXIST) ||
        (j->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        (j->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        cm_fmt(err, errlen, "HUBMETER_JOURNAL_DIR %s is not a writable directory: %s", dir,
               strerror(errno));
        goto fail;
    }
    /* Two gateways sharing one journal would ship each other's batches twice as theirs. */
    if (flock(j->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        cm_fmt(err, errlen, "the journal %s is in use by another hubmeter process", dir);
        goto fail;
    }
    j->max_bytes = max_bytes;
    j->bytes = directory_bytes(j);
    j->segment = highest(j, "rec-") + 1;
    j->next_batch = highest(j, "b-") + 1;
    if (open_segment(j, err, errlen) != CM_OK)
        goto fail;
    return j;
fail:
    meter_journal_close(j);
    return NULL;
}

void meter_journal_close(struct meter_journal *j)
{
    if (j == NULL)
        return;
    if (j->seg_fd >= 0) {
        fdatasync(j->seg_fd);
        close(j->seg_fd);
    }
    if (j->lock_fd >= 0)
        close(j->lock_fd); /* releases the lock */
    if (j->dir_fd >= 0)
        close(j->dir_fd);
    free(j->scratch);
    free(j);
}

static json_t *record_json(const struct meter_record *r, int64_t end_s)
{
    return json_pack("{s:I, s:I, s:I, s:s, s:s, s:s, s:i, s:s, s:I, s:I, s:s, s:s}", "t",
                     (json_int_t)end_s,
                     "org", (json_int_t)r->org_id, "key", (json_int_t)r->key_id, "net",
                     r->network, "repo", r->repo, "method", r->method, "sc",
                     (int)r->status_class, "refused", r->refused_by, "bytes",
                     (json_int_t)r->bytes, "req", r->partial ? 0 : 1, "client", r->client,
                     "etag", r->etag);
}

/* Appends s as a JSON string to out (pos advanced); false when s holds a byte outside
 * ASCII (then jansson, which checks UTF-8, writes the line) or out is too small. */
static bool put_string(char *out, size_t cap, size_t *pos, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t p = *pos;
    if (p >= cap)
        return false;
    out[p++] = '"';
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x80 || p + 7 >= cap)
            return false;
        if (c == '"' || c == '\\') {
            out[p++] = '\\';
            out[p++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(out + p, "\\u00", 4);
            out[p + 4] = hex[c >> 4];
            out[p + 5] = hex[c & 15];
            p += 6;
        } else {
            out[p++] = (char)c;
        }
    }
    out[p++] = '"';
    *pos = p;
    return true;
}

/* The record as one JSON line (with its newline) in out, as jansson would write it; the
 * length, or 0 when a field needs jansson's UTF-8 handling. Every finished request comes
 * through here, so it is written without allocating. */
static size_t record_line(const struct meter_record *r, int64_t end_s, char *out, size_t cap)
{
    struct cm_buf b;
    cm_buf_init(&b, out, cap);
    cm_buf_str(&b, "{\"t\":");
    cm_buf_i64(&b, end_s);
    cm_buf_str(&b, ",\"org\":");
    cm_buf_i64(&b, r->org_id);
    cm_buf_str(&b, ",\"key\":");
    cm_buf_i64(&b, r->key_id);
    cm_buf_str(&b, ",\"net\":");
    if (b.overflow || !put_string(out, cap, &b.len, r->network))
        return 0;
    cm_buf_str(&b, ",\"repo\":");
    if (b.overflow || !put_string(out, cap, &b.len, r->repo))
        return 0;
    cm_buf_str(&b, ",\"method\":");
    if (b.overflow || !put_string(out, cap, &b.len, r->method))
        return 0;
    cm_buf_str(&b, ",\"sc\":");
    cm_buf_u64(&b, r->status_class);
    cm_buf_str(&b, ",\"refused\":");
    if (b.overflow || !put_string(out, cap, &b.len, r->refused_by))
        return 0;
    cm_buf_str(&b, ",\"bytes\":");
    cm_buf_u64(&b, r->bytes);
    cm_buf_str(&b, r->partial ? ",\"req\":0,\"client\":" : ",\"req\":1,\"client\":");
    if (b.overflow || !put_string(out, cap, &b.len, r->client))
        return 0;
    cm_buf_str(&b, ",\"etag\":");
    if (b.overflow || !put_string(out, cap, &b.len, r->etag))
        return 0;
    cm_buf_str(&b, "}\n");
    return b.overflow ? 0 : b.len;
}

/* Appends the line of r (end_s) to out at *len; false when out cannot hold it. Lines
 * that need jansson's UTF-8 handling are dumped by it. */
static bool add_line(const struct meter_record *r, int64_t end_s, char *out, size_t cap,
                     size_t *len)
{
    size_t n = record_line(r, end_s, out + *len, cap - *len);
    if (n > 0) {
        *len += n;
        return true;
    }
    json_t *doc = record_json(r, end_s);
    char *dumped = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    n = dumped ? strlen(dumped) : 0;
    bool fits = dumped != NULL && n + 1 <= cap - *len;
    if (fits) {
        memcpy(out + *len, dumped, n);
        out[*len + n] = '\n';
        *len += n + 1;
    }
    free(dumped);
    return fits;
}

int meter_journal_append(struct meter_journal *j, const struct meter_record *recs, size_t n,
                         int64_t end_s, bool sync, size_t *unjournaled)
{
    *unjournaled = n;
    if (j->max_bytes != 0 && j->bytes >= j->max_bytes)
        return CM_AGAIN; /* full: the caller keeps the records in memory and raises the alarm */
    /* One write for all of them, from a buffer the journal keeps: a line is at most
     * ~2.5 KiB (its fields are bounded, and escaping a byte takes 6), so RECORD_LINE_MAX each
     * always holds it. */
    if (n * RECORD_LINE_MAX > j->scratch_cap) {
        char *grown = realloc(j->scratch, n * RECORD_LINE_MAX);
        if (grown == NULL)
            return CM_ERR;
        j->scratch = grown;
        j->scratch_cap = n * RECORD_LINE_MAX;
    }
    size_t len = 0, failed = 0;
    for (size_t i = 0; i < n; i++)
        if (!add_line(&recs[i], end_s, j->scratch, j->scratch_cap, &len))
            failed++; /* not valid UTF-8: kept in memory only, like a failed write */
    if (len > 0 && write(j->seg_fd, j->scratch, len) != (ssize_t)len)
        return CM_ERR;
    *unjournaled = failed;
    j->bytes += len;
    j->seg_bytes += len;
    j->dirty = len > 0 || j->dirty;
    if (sync && meter_journal_sync(j) != CM_OK)
        return CM_ERR;
    return failed == 0 ? CM_OK : CM_ERR;
}

int meter_journal_sync(struct meter_journal *j)
{
    if (!j->dirty)
        return CM_OK;
    j->dirty = false;
    return fdatasync(j->seg_fd) == 0 ? CM_OK : CM_ERR;
}

int meter_journal_rotate(struct meter_journal *j, uint64_t *old_segment, int *old_fd,
                         char *err, size_t errlen)
{
    *old_fd = j->seg_fd;
    *old_segment = j->segment++;
    if (open_segment(j, err, errlen) != CM_OK) {
        j->seg_fd = *old_fd;
        j->segment--;
        return CM_ERR;
    }
    j->old_seg_bytes = j->seg_bytes;
    j->seg_bytes = 0;
    return CM_OK;
}

int meter_journal_write_batch(struct meter_journal *j, const char *body, uint64_t *number)
{
    char tmp[CM_URL_MAX + 64], final[CM_URL_MAX + 64];
    *number = j->next_batch++;
    path(j, tmp, sizeof tmp, "tmp-", *number, ".json");
    path(j, final, sizeof final, "b-", *number, ".json");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return CM_ERR;
    size_t len = strlen(body);
    bool ok = write(fd, body, len) == (ssize_t)len && fdatasync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, final) != 0 || fsync(j->dir_fd) != 0) {
        unlink(tmp);
        return CM_ERR;
    }
    j->bytes += len;
    return CM_OK;
}

void meter_journal_drop_segment(struct meter_journal *j, uint64_t segment)
{
    char p[CM_URL_MAX + 64];
    path(j, p, sizeof p, "rec-", segment, ".log");
    if (unlink(p) == 0)
        j->bytes -= j->old_seg_bytes < j->bytes ? j->old_seg_bytes : j->bytes;
}

void meter_journal_close_segment(int fd)
{
    fdatasync(fd);
    close(fd);
}

uint64_t meter_journal_bytes(const struct meter_journal *j) { return j->bytes; }

void meter_journal_drop_old_segments(struct meter_journal *j)
{
    DIR *d = opendir(j->dir);
    struct dirent *e;
    char p[CM_URL_MAX + 300];
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "rec-", 4) == 0 && strtoull(e->d_name + 4, NULL, 10) < j->segment) {
            cm_fmt(p, sizeof p, "%s/%s", j->dir, e->d_name);
            unlink(p);
        }
    }
    if (d != NULL)
        closedir(d);
    fsync(j->dir_fd);
    j->bytes = directory_bytes(j);
}

void meter_journal_drop_batch(struct meter_journal *j, uint64_t number, size_t len)
{
    char p[CM_URL_MAX + 64];
    path(j, p, sizeof p, "b-", number, ".json");
    if (unlink(p) == 0)
        j->bytes -= len < j->bytes ? len : j->bytes;
}

static char *slurp(const char *p)
{
    FILE *f = fopen(p, "rb");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    char chunk[65536];
    size_t n;
    while (out != NULL && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, out);
    fclose(f);
    if (out == NULL || fclose(out) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Feeds the complete lines of one segment to the aggregate; a torn last line (a machine
 * crash mid-write) is skipped. Returns the number of records read. */
static size_t replay_segment(const char *p, struct meter_agg *agg)
{
    char *text = slurp(p);
    size_t count = 0;
    for (char *line = text; line != NULL && *line != '\0';) {
        char *nl = strchr(line, '\n');
        if (nl == NULL)
            break; /* torn */
        *nl = '\0';
        json_t *doc = json_loads(line, 0, NULL);
        struct meter_record r = {0};
        const char *s;
        if (doc != NULL) {
            r.org_id = json_integer_value(json_object_get(doc, "org"));
            r.key_id = json_integer_value(json_object_get(doc, "key"));
            if ((s = json_string_value(json_object_get(doc, "net"))) != NULL)
                cm_copy(r.network, sizeof r.network, s);
            if ((s = json_string_value(json_object_get(doc, "repo"))) != NULL)
                cm_copy(r.repo, sizeof r.repo, s);
            if ((s = json_string_value(json_object_get(doc, "method"))) != NULL)
                cm_copy(r.method, sizeof r.method, s);
            if ((s = json_string_value(json_object_get(doc, "refused"))) != NULL)
                cm_copy(r.refused_by, sizeof r.refused_by, s);
            if ((s = json_string_value(json_object_get(doc, "client"))) != NULL)
                cm_copy(r.client, sizeof r.client, s);
            if ((s = json_string_value(json_object_get(doc, "etag"))) != NULL)
                cm_copy(r.etag, sizeof r.etag, s);
            r.status_class = (uint8_t)json_integer_value(json_object_get(doc, "sc"));
            r.bytes = (uint64_t)json_integer_value(json_object_get(doc, "bytes"));
            r.partial = json_integer_value(json_object_get(doc, "req")) == 0;
            if (meter_agg_add(agg, &r, json_integer_value(json_object_get(doc, "t"))) == CM_OK)
                count++;
            json_decref(doc);
        }
        line = nl + 1;
    }
    free(text);
    return count;
}

int meter_journal_recover(struct meter_journal *j, meter_journal_batch_fn on_batch, void *arg,
                          struct meter_agg *agg, size_t *records)
{
    struct dirent **names;
    int n = scandir(j->dir, &names, NULL, by_name);
    if (n < 0)
        return CM_ERR;
    *records = 0;
    char p[CM_URL_MAX + 300];
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        cm_fmt(p, sizeof p, "%s/%s", j->dir, name);
        if (strncmp(name, "b-", 2) == 0) {
            char *body = slurp(p);
            if (body != NULL)
                on_batch(arg, strtoull(name + 2, NULL, 10), body); /* takes body */
        } else if (strncmp(name, "rec-", 4) == 0) {
            uint64_t seg = strtoull(name + 4, NULL, 10);
            if (seg < j->segment) /* not the segment this process just opened */
                *records += replay_segment(p, agg);
        } else if (strncmp(name, "tmp-", 4) == 0) {
            unlink(p); /* a batch never completed: its segment is still there */
        }
        free(names[i]);
    }
    free(names);
    return CM_OK;
}
