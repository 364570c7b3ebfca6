/*
 * libFuzzer target: any bytes as a control-channel packet.  The decoder must
 * accept or refuse without reading outside the input, and whatever it
 * accepts must encode back to the very same bytes.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "spindle/channel.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char buf[SP_MSG_MAX];
    struct sp_msg m;
    ssize_t n;

    if (sp_msg_decode(data, size, &m) != 0)
        return 0;
    assert(strcmp(sp_msg_type_name(m.type), "UNKNOWN") != 0);
    n = sp_msg_encode(&m, buf, sizeof(buf));
    assert(n == (ssize_t)size);
    assert(memcmp(buf, data, size) == 0);
    return 0;
}
