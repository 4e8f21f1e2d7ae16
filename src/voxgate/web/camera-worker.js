// Camera frames, off the main thread: an ImageBitmap in (already shrunk by
// createImageBitmap), a JPEG out. One frame at a time: the page skips a tick
// while this worker is busy, so under load frames are dropped, never queued.
let canvas = null;
let context = null;

self.onmessage = async (event) => {
  const { bitmap, quality } = event.data;
  try {
    if (!canvas || canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
      canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
      context = canvas.getContext('2d', { alpha: false });
    }
    context.drawImage(bitmap, 0, 0);
    const blob = await canvas.convertToBlob({ type: 'image/jpeg', quality });
    const jpeg = await blob.arrayBuffer();
    self.postMessage({ jpeg }, [jpeg]);
  } catch (err) {
    self.postMessage({ error: String(err && err.message ? err.message : err) });
  } finally {
    bitmap.close();
  }
};
