// core/tensor/tensor.h — float32 tensors over Eigen.
//
// Contract:
// - Every tensor element is a float32. Token ids and masks are stored as floats too (exact for
//   integers below 2^24), which keeps one buffer type through the whole graph.
// - Storage is contiguous and row-major; the last dimension varies fastest.
// - `Tensor` owns its storage (64-byte aligned). `TensorView` borrows it: nodes only ever see views
//   into buffers the executor owns, so a node never allocates activation memory.
// - A view with a null data pointer is "absent" (for example the gradient of an input that needs
//   none); `present()` tells.
#pragma once

#include <Eigen/Core>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace attnlab {

using Shape = std::vector<int64_t>;

int64_t numel(const Shape& shape);
std::string to_string(const Shape& shape);  // "[2, 3, 4]"

using RowMajorMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

class TensorView {
 public:
  TensorView() = default;
  TensorView(float* data, Shape shape) : data_(data), shape_(std::move(shape)) {}

  bool present() const { return data_ != nullptr; }
  float* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  int64_t rank() const { return static_cast<int64_t>(shape_.size()); }
  int64_t dim(int64_t axis) const;  // negative axes count from the end
  int64_t numel() const { return attnlab::numel(shape_); }

  // The tensor as a matrix whose columns are the last dimension and rows everything before it.
  Eigen::Map<RowMajorMatrix> matrix() const;
  Eigen::Map<Eigen::VectorXf> flat() const { return {data_, numel()}; }

  void fill(float value) const;
  void set_zero() const { fill(0.0f); }
  void copy_from(const TensorView& other) const;  // shapes must have equal element counts

 private:
  float* data_ = nullptr;
  Shape shape_;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape, float value = 0.0f);
  Tensor(Shape shape, std::initializer_list<float> values);

  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;
  Tensor(const Tensor& other);
  Tensor& operator=(const Tensor& other);

  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  const Shape& shape() const { return shape_; }
  int64_t numel() const { return attnlab::numel(shape_); }
  bool empty() const { return numel() == 0; }

  TensorView view() const { return {data_.get(), shape_}; }
  operator TensorView() const { return view(); }
  // Same storage, another shape with the same element count.
  TensorView reshaped(Shape shape) const;

 private:
  struct Free { void operator()(float* p) const; };
  std::unique_ptr<float[], Free> data_;
  Shape shape_;
};

}  // namespace attnlab
