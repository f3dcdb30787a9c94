"""The way in: user images decoded and checked, letterboxed into the model input, run through
the network as views (whole images and ClsCLIP+ crops) in chunks, many images batched by a
`DataLoader`; class vectors cached."""
