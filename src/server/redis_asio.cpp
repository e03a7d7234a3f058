#include "server/redis_asio.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <memory>

namespace pi::server {

namespace {

namespace net = boost::asio;

// One per context. Owned by itself (`self`) from attach to cleanup; pending waits hold it too, so a
// wait that completes after cleanup finds `ac == nullptr` and does nothing.
struct Adapter : std::enable_shared_from_this<Adapter> {
  Adapter(redisAsyncContext* c, net::io_context& ioc) : ac(c), sd(ioc, c->c.fd) {}

  redisAsyncContext* ac;
  net::posix::stream_descriptor sd;  // not the owner of the fd: released at cleanup (hiredis closes it)
  bool want_read = false;
  bool want_write = false;
  bool reading = false;  // a read wait is pending
  bool writing = false;
  std::shared_ptr<Adapter> self;

  void arm_read() {
    if (reading || ac == nullptr) return;
    reading = true;
    sd.async_wait(net::posix::stream_descriptor::wait_read,
                  [a = shared_from_this()](const boost::system::error_code& ec) {
                    a->reading = false;
                    if (ec || a->ac == nullptr || !a->want_read) return;
                    redisAsyncHandleRead(a->ac);  // may free the context (cleanup sets ac = nullptr)
                    if (a->want_read) a->arm_read();
                  });
  }
  void arm_write() {
    if (writing || ac == nullptr) return;
    writing = true;
    sd.async_wait(net::posix::stream_descriptor::wait_write,
                  [a = shared_from_this()](const boost::system::error_code& ec) {
                    a->writing = false;
                    if (ec || a->ac == nullptr || !a->want_write) return;
                    redisAsyncHandleWrite(a->ac);  // connects, flushes; may free the context
                    if (a->want_write) a->arm_write();
                  });
  }

  static Adapter* of(void* p) { return static_cast<Adapter*>(p); }
  static void add_read(void* p) {
    auto* a = of(p);
    a->want_read = true;
    a->arm_read();
  }
  static void del_read(void* p) { of(p)->want_read = false; }
  static void add_write(void* p) {
    auto* a = of(p);
    a->want_write = true;
    a->arm_write();
  }
  static void del_write(void* p) { of(p)->want_write = false; }
  static void cleanup(void* p) {
    auto* a = of(p);
    a->want_read = a->want_write = false;
    a->ac = nullptr;
    boost::system::error_code ignored;
    a->sd.cancel(ignored);
    a->sd.release();                 // hiredis closes the fd
    auto keep = std::move(a->self);  // the last reference may be a pending wait's
  }
};

}  // namespace

bool redis_asio_attach(redisAsyncContext* ac, net::io_context& ioc) {
  if (ac->ev.data != nullptr) return false;
  auto a = std::make_shared<Adapter>(ac, ioc);
  a->self = a;
  ac->ev.data = a.get();
  ac->ev.addRead = &Adapter::add_read;
  ac->ev.delRead = &Adapter::del_read;
  ac->ev.addWrite = &Adapter::add_write;
  ac->ev.delWrite = &Adapter::del_write;
  ac->ev.cleanup = &Adapter::cleanup;
  return true;
}

}  // namespace pi::server
