// ByteQueue: a FIFO of bytes for socket input and output (append at the back, consume from the front),
// on raw storage so reserving room for a read never zero-fills it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

namespace pgfleet::proxy {

class ByteQueue {
 public:
  [[nodiscard]] std::span<const uint8_t> view() const { return {data_.get() + head_, tail_ - head_}; }
  [[nodiscard]] size_t size() const { return tail_ - head_; }
  [[nodiscard]] bool empty() const { return head_ == tail_; }
  [[nodiscard]] size_t capacity() const { return capacity_; }
  // Bytes consumed since the queue was made (a writer's progress).
  [[nodiscard]] uint64_t consumed() const { return consumed_; }

  void append(std::span<const uint8_t> bytes) {
    std::memcpy(reserve(bytes.size()), bytes.data(), bytes.size());
    tail_ += bytes.size();
  }
  void consume(size_t n) {
    consumed_ += n;
    head_ += n;
    if (head_ == tail_) head_ = tail_ = 0;
  }
  // Room for at least `n` more bytes at the back; commit(k) after writing k of them.
  uint8_t* reserve(size_t n) {
    if (capacity_ - tail_ < n) {
      size_t live = tail_ - head_;
      if (head_ > 0 && capacity_ - live >= n && live <= capacity_ / 2) {
        std::memmove(data_.get(), data_.get() + head_, live);  // slide down instead of growing
      } else {
        size_t grown = std::max({capacity_ * 2, live + n, size_t{4096}});
        auto bigger = std::make_unique_for_overwrite<uint8_t[]>(grown);
        if (live) std::memcpy(bigger.get(), data_.get() + head_, live);
        data_ = std::move(bigger);
        capacity_ = grown;
      }
      head_ = 0;
      tail_ = live;
    }
    return data_.get() + tail_;
  }
  void commit(size_t used) { tail_ += used; }
  void clear() { head_ = tail_ = 0; }
  // Gives memory back after a burst (a large COPY or result), keeping small buffers.
  void shrink() {
    if (empty() && capacity_ > 256 * 1024) release();
  }
  // Frees the storage of an empty queue (idle connections hold no buffers).
  void release() {
    if (!empty()) return;
    data_.reset();
    capacity_ = 0;
    head_ = tail_ = 0;
  }

 private:
  std::unique_ptr<uint8_t[]> data_;
  size_t capacity_ = 0;
  size_t head_ = 0;
  size_t tail_ = 0;
  uint64_t consumed_ = 0;
};

}  // namespace pgfleet::proxy
