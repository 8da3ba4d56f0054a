/*  tr_curve.c - CURVE key files and the allow folder; see tr_curve.h.

    The reader takes the lines of a ZPL file: '#' starts a comment line,
    a line without indentation opens a section, an indented line
    "name = value" (value quoted with " or ', or bare up to the first
    space) belongs to the section above it. Only the "curve" section's
    public-key and secret-key are used; anything else is ignored, so
    czmq's metadata and comments pass through.
*/

#include "tr_curve.h"
#include "troupe/tr_error.h"
#include "troupe/tr_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

//  A key file is a few hundred bytes; anything past this is not one.
#define S_FILE_MAX      65536

struct tr__curve_keys {
    uint8_t (*keys) [32];               //  sorted, for bsearch
    size_t count;
};

//  --------------------------------------------------------------------------
//  Reading

//  Maps an errno from open or read to an error code.
static int
s_errno_code (int err)
{
    return err == ENOENT || err == ENOTDIR? TR_ENOTFOUND:
           err == EACCES || err == EPERM? TR_EACCES: TR_ESYS;
}

//  Reads the whole file into buf (NUL-terminated). With `secret`, the
//  owner and mode are checked on the descriptor read from, so the file
//  checked is the file read. Returns TR_OK or an error (logged).
static int
s_slurp (const char *who, const char *path, bool secret, bool quiet, char *buf, size_t size)
{
    int level = quiet? TR_LOG_DEBUG: TR_LOG_ERROR;
    int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int err = errno;
        tr_log (level, "%s: cannot read the %s key file %s: %s", who,
                secret? "secret": "public", path, strerror (err));
        return s_errno_code (err);
    }
    struct stat st;
    int rc = TR_OK;
    if (fstat (fd, &st)) {
        tr_log (level, "%s: cannot stat %s: %s", who, path, strerror (errno));
        rc = TR_ESYS;
    }
    else
    if (!S_ISREG (st.st_mode)) {
        tr_log (level, "%s: the key file %s is not a regular file", who, path);
        rc = TR_EMALFORMED;
    }
    else
    if (secret && st.st_uid != geteuid ()) {
        tr_log (level, "%s: refusing the secret key file %s: it belongs to user "
                "%u, not to this program's user %u", who, path, (unsigned) st.st_uid,
                (unsigned) geteuid ());
        rc = TR_EACCES;
    }
    else
    if (secret && (st.st_mode & (S_IRWXG | S_IRWXO))) {
        tr_log (level, "%s: refusing the secret key file %s: its mode %04o lets "
                "others read or change it (chmod 600 %s, and make a new key pair if "
                "others may have read it)", who, path, (unsigned) (st.st_mode & 07777), path);
        rc = TR_EACCES;
    }
    size_t len = 0;
    while (rc == TR_OK && len < size - 1) {
        ssize_t n = read (fd, buf + len, size - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            tr_log (level, "%s: cannot read %s: %s", who, path, strerror (err));
            rc = s_errno_code (err);
        }
        if (n <= 0)
            break;
        len += (size_t) n;
    }
    close (fd);
    if (rc == TR_OK && len == size - 1) {
        tr_log (level, "%s: %s is too large for a key file", who, path);
        rc = TR_EMALFORMED;
    }
    buf [len] = 0;
    return rc;
}

//  Copies a value (quoted or bare) that starts at *s into out (size
//  bytes). Returns false if it does not fit or a quote is not closed.
static bool
s_value (const char *s, char *out, size_t size)
{
    char quote = *s == '"' || *s == '\''? *s++: 0;
    size_t len = 0;
    while (*s && (quote? *s != quote: *s != ' ' && *s != '\t')) {
        if (len + 1 >= size)
            return false;
        out [len++] = *s++;
    }
    out [len] = 0;
    return !quote || *s == quote;
}

//  Finds the curve section's keys in text (modified: split in lines).
//  Each found is copied as Z85 text (checked to decode); *found gets
//  bit 1 for the public key, bit 2 for the secret key. Returns false if
//  a key is there but is not a Z85 key of 32 bytes, or comes twice.
static bool
s_parse (char *text, char *public_txt, char *secret_txt, int *found)
{
    bool in_curve = false;
    char *save = NULL;
    *found = 0;
    for (char *line = strtok_r (text, "\r\n", &save); line;
         line = strtok_r (NULL, "\r\n", &save)) {
        const char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == 0 || *s == '#')
            continue;
        if (s == line) {
            size_t len = strcspn (s, " \t=#");
            in_curve = len == 5 && strncmp (s, "curve", 5) == 0;
            continue;
        }
        if (!in_curve)
            continue;
        size_t len = strcspn (s, " \t=");
        int bit = len == 10 && strncmp (s, "public-key", 10) == 0? 1:
                  len == 10 && strncmp (s, "secret-key", 10) == 0? 2: 0;
        if (!bit)
            continue;
        s += len;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s++ != '=')
            return false;
        while (*s == ' ' || *s == '\t')
            s++;
        char *out = bit == 1? public_txt: secret_txt;
        uint8_t bin [32];
        if ((*found & bit) || !s_value (s, out, TR__CURVE_TXT) || strlen (out) != 40
        ||  !zmq_z85_decode (bin, out))
            return false;
        *found |= bit;
    }
    return true;
}

int
tr__curve_secret_load (const char *who, const char *path, char *public_txt, char *secret_txt)
{
    char *buf = (char *) malloc (S_FILE_MAX);
    if (!buf)
        return TR_ENOMEM;
    int rc = s_slurp (who, path, true, false, buf, S_FILE_MAX);
    int found = 0;
    char given [TR__CURVE_TXT] = "";
    if (rc == TR_OK && (!s_parse (buf, given, secret_txt, &found) || !(found & 2))) {
        tr_log (TR_LOG_ERROR, "%s: %s is not a secret key file (a 'curve' section with a "
                "Z85 secret-key, as 'troupe keygen' writes)", who, path);
        rc = TR_EMALFORMED;
    }
    if (rc == TR_OK && zmq_curve_public (public_txt, secret_txt)) {
        tr_log (TR_LOG_ERROR, "%s: cannot derive the public key of %s: %s", who, path,
                zmq_strerror (errno));
        rc = TR_ESYS;
    }
    if (rc == TR_OK && (found & 1) && strcmp (given, public_txt)) {
        tr_log (TR_LOG_ERROR, "%s: in %s, the public-key is not the secret-key's own", who,
                path);
        rc = TR_EMALFORMED;
    }
    memset (buf, 0, S_FILE_MAX);        //  the secret key's text
    free (buf);
    return rc;
}

int
tr__curve_public_load (const char *who, const char *path, char *public_txt)
{
    char *buf = (char *) malloc (S_FILE_MAX);
    if (!buf)
        return TR_ENOMEM;
    int rc = s_slurp (who, path, false, false, buf, S_FILE_MAX);
    int found = 0;
    char secret [TR__CURVE_TXT];
    if (rc == TR_OK && (!s_parse (buf, public_txt, secret, &found) || !(found & 1))) {
        tr_log (TR_LOG_ERROR, "%s: %s is not a public key file (a 'curve' section with a "
                "Z85 public-key, as 'troupe keygen' writes)", who, path);
        rc = TR_EMALFORMED;
    }
    memset (buf, 0, S_FILE_MAX);
    memset (secret, 0, sizeof secret);
    free (buf);
    return rc;
}

//  --------------------------------------------------------------------------
//  Writing

//  Writes one key file, created new (O_EXCL) with this mode exactly.
//  Returns TR_OK or an error code (errno set).
static int
s_write (const char *path, mode_t mode, const char *name, const char *kind,
         const char *public_txt, const char *secret_txt)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return errno == EEXIST? TR_EEXIST: s_errno_code (errno);
    char when [64] = "";
    time_t now = time (NULL);
    struct tm tm;
    if (localtime_r (&now, &tm))
        strftime (when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    char text [1024];
    int len = snprintf (text, sizeof text,
        "#   ****  Generated on %s by troupe keygen  ****\n"
        "#   ZeroMQ CURVE %s Certificate\n"
        "#   %s\n\n"
        "metadata\n"
        "    name = \"%s\"\n"
        "curve\n"
        "    public-key = \"%s\"\n"
        "%s%s%s",
        when, kind, secret_txt? "DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its "
        "permissions.": "Exchange securely, or verify its contents after exchange.",
        name, public_txt, secret_txt? "    secret-key = \"": "", secret_txt? secret_txt: "",
        secret_txt? "\"\n": "");
    int rc = TR_OK;
    //  The mode given to open was cut by the umask: set it exactly.
    if (fchmod (fd, mode) || write (fd, text, (size_t) len) != len || fsync (fd))
        rc = s_errno_code (errno);
    memset (text, 0, sizeof text);
    if (close (fd) && rc == TR_OK)
        rc = s_errno_code (errno);
    return rc;
}

int
tr__curve_keygen (const char *dir, const char *name, char *secret_path, char *public_path,
                  size_t size)
{
    if (!dir || !name || !*name || *name == '.'
    ||  strspn (name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        != strlen (name))
        return TR_EINVAL;
    if ((size_t) snprintf (secret_path, size, "%s/%s.secret", dir, name) >= size
    ||  (size_t) snprintf (public_path, size, "%s/%s.public", dir, name) >= size)
        return TR_EINVAL;
    struct stat st;
    if (stat (dir, &st))
        return s_errno_code (errno);
    if (!S_ISDIR (st.st_mode)) {
        errno = ENOTDIR;
        return TR_ENOTFOUND;
    }
    if (lstat (secret_path, &st) == 0 || lstat (public_path, &st) == 0)
        return TR_EEXIST;
    char public_txt [TR__CURVE_TXT], secret_txt [TR__CURVE_TXT];
    if (zmq_curve_keypair (public_txt, secret_txt))
        return TR_ESYS;
    int rc = s_write (secret_path, 0600, name, "**Secret**", public_txt, secret_txt);
    memset (secret_txt, 0, sizeof secret_txt);
    if (rc)
        return rc;
    rc = s_write (public_path, 0644, name, "Public", public_txt, NULL);
    if (rc) {
        int err = errno;
        unlink (secret_path);
        errno = err;
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  Endpoints

bool
tr__curve_endpoint_local (const char *endpoint)
{
    if (!endpoint)
        return false;
    if (strncmp (endpoint, "ipc://", 6) == 0 || strncmp (endpoint, "inproc://", 9) == 0)
        return true;
    if (strncmp (endpoint, "tcp://", 6) != 0)
        return false;
    const char *host = endpoint + 6;
    const char *colon = strrchr (host, ':');
    if (!colon)
        return false;
    size_t len = (size_t) (colon - host);
    if ((len == 9 && strncmp (host, "localhost", 9) == 0)
    ||  (len == 5 && strncmp (host, "[::1]", 5) == 0))
        return true;
    //  127.0.0.0/8, written as four decimal numbers.
    if (len < 7 || len > 15 || strncmp (host, "127.", 4))
        return false;
    int dots = 0;
    for (const char *c = host; c < colon; c++) {
        if (*c == '.')
            dots++;
        else
        if (*c < '0' || *c > '9')
            return false;
    }
    return dots == 3;
}

//  --------------------------------------------------------------------------
//  The allow folder

static int
s_key_cmp (const void *a, const void *b)
{
    return memcmp (a, b, 32);
}

//  Adds the key of one file to the set, if it is a key file.
static int
s_keys_add (tr__curve_keys_t *self, const char *path, size_t *room, bool verbose)
{
    char *buf = (char *) malloc (S_FILE_MAX);
    if (!buf)
        return TR_ENOMEM;
    //  Quiet when not verbose: the folder is read again and again.
    int rc = s_slurp ("broker", path, false, !verbose, buf, S_FILE_MAX);
    int found = 0;
    char public_txt [TR__CURVE_TXT], secret_txt [TR__CURVE_TXT];
    bool ok = rc == TR_OK && s_parse (buf, public_txt, secret_txt, &found) && (found & 1);
    memset (buf, 0, S_FILE_MAX);
    memset (secret_txt, 0, sizeof secret_txt);
    free (buf);
    if (!ok) {
        if (verbose)
            tr_log (TR_LOG_WARN, "broker: %s in the allow folder is not a key file; "
                    "skipped", path);
        return TR_OK;
    }
    if (verbose && (found & 2))
        tr_log (TR_LOG_WARN, "broker: %s in the allow folder holds a secret key; only "
                "its public key is used (the folder needs public keys only)", path);
    if (self->count == *room) {
        size_t more = *room? *room * 2: 16;
        void *keys = realloc (self->keys, more * 32);
        if (!keys)
            return TR_ENOMEM;
        self->keys = (uint8_t (*) [32]) keys;
        *room = more;
    }
    zmq_z85_decode (self->keys [self->count++], public_txt);
    return TR_OK;
}

int
tr__curve_keys_load (const char *dir, bool verbose, tr__curve_keys_t **keys_p)
{
    DIR *d = opendir (dir);
    if (!d) {
        int err = errno;
        if (verbose)
            tr_log (TR_LOG_ERROR, "broker: cannot read the allow folder %s: %s", dir,
                    strerror (err));
        return s_errno_code (err);
    }
    tr__curve_keys_t *self = (tr__curve_keys_t *) calloc (1, sizeof *self);
    int rc = self? TR_OK: TR_ENOMEM;
    size_t room = 0;
    struct dirent *entry;
    while (rc == TR_OK && (entry = readdir (d))) {
        if (entry->d_name [0] == '.')
            continue;
        char path [4096];
        struct stat st;
        if ((size_t) snprintf (path, sizeof path, "%s/%s", dir, entry->d_name) >= sizeof path
        ||  stat (path, &st) || !S_ISREG (st.st_mode))
            continue;
        rc = s_keys_add (self, path, &room, verbose);
    }
    closedir (d);
    if (rc) {
        tr__curve_keys_destroy (&self);
        return rc;
    }
    if (self->count)
        qsort (self->keys, self->count, 32, s_key_cmp);
    *keys_p = self;
    return TR_OK;
}

bool
tr__curve_keys_has (const tr__curve_keys_t *self, const uint8_t *key)
{
    return self && self->count && bsearch (key, self->keys, self->count, 32, s_key_cmp);
}

size_t
tr__curve_keys_count (const tr__curve_keys_t *self)
{
    return self? self->count: 0;
}

void
tr__curve_keys_destroy (tr__curve_keys_t **keys_p)
{
    if (!keys_p || !*keys_p)
        return;
    free ((*keys_p)->keys);
    free (*keys_p);
    *keys_p = NULL;
}
