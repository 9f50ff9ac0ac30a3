//! Convolution against a direct six-loop definition, and im2col/col2im as adjoints, over a grid of
//! shapes, strides, paddings, dilations and groups (f64).

use modelopt_nn::{Conv2d, Window, col2im, im2col};
use ndarray::{Array1, Array2, Array3, Array4};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn random4(shape: (usize, usize, usize, usize), rng: &mut StdRng) -> Array4<f64> {
    Array4::from_shape_simple_fn(shape, || rng.random::<f64>() * 2.0 - 1.0)
}

/// y[n, o, r, q] = b[o] + sum_{c in group(o), i, j} w[o, c, i, j] x[n, g*cg + c, r*s + i*d - p, q*s + j*d - p]
fn direct(
    x: &Array4<f64>,
    w: &Array4<f64>,
    b: &Array1<f64>,
    win: &Window,
    groups: usize,
) -> Array4<f64> {
    let (n, _, h, wd) = x.dim();
    let (out, cg, kh, kw) = w.dim();
    let (oh, ow) = win.output_size(h, wd).unwrap();
    let og = out / groups;
    Array4::from_shape_fn((n, out, oh, ow), |(bi, o, r, q)| {
        let g = o / og;
        let mut acc = b[o];
        for c in 0..cg {
            for i in 0..kh {
                for j in 0..kw {
                    let ih = (r * win.stride[0] + i * win.dilation[0]) as isize
                        - win.padding[0] as isize;
                    let iw = (q * win.stride[1] + j * win.dilation[1]) as isize
                        - win.padding[1] as isize;
                    if ih >= 0 && iw >= 0 && (ih as usize) < h && (iw as usize) < wd {
                        acc += w[[o, c, i, j]] * x[[bi, g * cg + c, ih as usize, iw as usize]];
                    }
                }
            }
        }
        acc
    })
}

#[test]
fn conv_matches_the_direct_definition_over_a_grid() {
    let mut rng = StdRng::seed_from_u64(9);
    let mut cases = 0;
    for (cin, cout, groups) in [(1, 3, 1), (4, 6, 2), (3, 3, 3), (2, 4, 1)] {
        for (k0, k1) in [(1, 1), (3, 3), (2, 3)] {
            for stride in [1, 2, 3] {
                for padding in [0, 1, 2] {
                    for dilation in [1, 2] {
                        let win = Window::new([k0, k1], [stride; 2], [padding; 2], [dilation; 2])
                            .unwrap();
                        let (h, wd) = (7, 6);
                        if win.output_size(h, wd).is_err() {
                            continue;
                        }
                        let x = random4((2, cin, h, wd), &mut rng);
                        let w = random4((cout, cin / groups, k0, k1), &mut rng);
                        let b = Array1::from_shape_simple_fn(cout, || rng.random::<f64>());
                        let conv =
                            Conv2d::from_parts(w.clone(), Some(b.clone()), win, groups).unwrap();
                        let got = conv.forward(&x).unwrap();
                        let want = direct(&x, &w, &b, &win, groups);
                        for (g, e) in got.iter().zip(&want) {
                            assert!((g - e).abs() < 1e-12, "{win:?} groups {groups}: {g} vs {e}");
                        }
                        cases += 1;
                    }
                }
            }
        }
    }
    assert!(cases > 150, "{cases} cases");
}

#[test]
fn im2col_and_col2im_are_adjoint() {
    // <im2col(x), c> = <x, col2im(c)> for every geometry: col2im is the exact transpose.
    let mut rng = StdRng::seed_from_u64(10);
    for stride in [1, 2] {
        for padding in [0, 1, 2] {
            for dilation in [1, 3] {
                let win = Window::new([3, 2], [stride, 1], [padding, 1], [dilation, 1]).unwrap();
                let (c, h, w) = (2, 9, 5);
                let Ok((oh, ow)) = win.output_size(h, w) else {
                    continue;
                };
                let x = Array3::from_shape_simple_fn((c, h, w), || rng.random::<f64>());
                let cols_in =
                    Array2::from_shape_simple_fn((c * 6, oh * ow), || rng.random::<f64>());
                let mut cols = Array2::zeros((c * 6, oh * ow));
                im2col(&x, &win, &mut cols).unwrap();
                let mut back = Array3::zeros((c, h, w));
                col2im(&cols_in, &win, &mut back).unwrap();
                let lhs: f64 = (&cols * &cols_in).sum();
                let rhs: f64 = (&x * &back).sum();
                assert!((lhs - rhs).abs() < 1e-10, "{win:?}: {lhs} vs {rhs}");
            }
        }
    }
    // Wrong column-matrix shapes are errors.
    let win = Window::square(3, 1, 0, 1).unwrap();
    let mut cols = Array2::<f64>::zeros((5, 5));
    assert!(im2col(&Array3::zeros((1, 4, 4)), &win, &mut cols).is_err());
}
