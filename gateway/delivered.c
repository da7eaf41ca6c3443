/*
 * How many bytes the client really received: the kernel's count of bytes the peer has
 * acknowledged on the connection (TCP_INFO tcpi_bytes_acked), read when a request starts
 * and when it ends. Bytes sitting in libmicrohttpd's buffer or the socket's send queue
 * when a client aborts are not counted. Kept apart: <linux/tcp.h> clashes with <netinet/>.
 */
#include <linux/tcp.h>
#include <sys/socket.h>

#include "gateway/gw_int.h"

int gw_tcp_bytes_acked(int fd, uint64_t *acked)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (fd < 0 || getsockopt(fd, 6 /* IPPROTO_TCP */, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof ti.tcpi_bytes_acked)
        return CM_ERR;
    *acked = ti.tcpi_bytes_acked;
    return CM_OK;
}
