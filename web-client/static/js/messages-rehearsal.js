// Texts of the rehearsal page (/proeve), where anyone can try camera,
// microphone and connection before the day, and of the way to it from the
// join page (merged into messages.js). The camera and microphone lines are
// the join check's own (`check.*`, `media.*`), so both pages say the same.

export const DA_REHEARSAL = {
  'rehearsal.title': 'Prøv kamera og mikrofon',
  'rehearsal.intro.title': 'Prøv dit kamera og din mikrofon',
  'rehearsal.intro.text':
    'Her kan du prøve, om dit kamera, din mikrofon og din forbindelse virker. Gør det gerne et par dage før din videokonsultation.',
  'rehearsal.intro.private': 'Det er kun en prøve. Ingen kan se eller høre dig, og intet bliver gemt.',
  'rehearsal.start': 'Start prøven',

  'rehearsal.check.title': 'Prøve af kamera, lyd og forbindelse',
  'rehearsal.server.wait': 'Vi tjekker forbindelsen til Konsult …',
  'rehearsal.server.ok': 'Der er forbindelse til Konsult.',
  'rehearsal.server.bad': 'Vi kan ikke få forbindelse til Konsult.',
  'rehearsal.webrtc.wait': 'Vi tjekker, om din browser kan holde videosamtaler …',
  'rehearsal.webrtc.ok': 'Din browser kan holde videosamtaler.',
  'rehearsal.webrtc.bad': 'Din browser kan ikke holde videosamtaler lige nu.',
  'rehearsal.webrtc.badHelp':
    'Luk browseren, og åbn siden igen. Hjælper det ikke, så brug en nyere udgave af Chrome, Edge, Firefox eller Safari.',

  // The result at the top of the check, read out when it changes.
  'rehearsal.summary.checking': 'Vi tjekker, at alt virker. Det tager et halvt minut.',
  'rehearsal.summary.mic': 'Sig noget, så vi kan høre, om mikrofonen virker.',
  'rehearsal.summary.ok': 'Alt virker. Du er klar til din videokonsultation.',
  'rehearsal.summary.problems': 'Det virker ikke endnu: {what}. Se herunder, hvad du kan gøre.',
  'rehearsal.summary.call': 'Ring til klinikken, hvis du ikke kan få det til at virke.',
  'rehearsal.part.camera': 'kameraet',
  'rehearsal.part.mic': 'mikrofonen',
  'rehearsal.part.net': 'forbindelsen',

  'rehearsal.finish': 'Afslut prøven',
  'rehearsal.done.okTitle': 'Du er klar',
  'rehearsal.done.title': 'Prøven er slut',
  'rehearsal.done.off': 'Kameraet og mikrofonen er slukket nu.',
  'rehearsal.done.okNext':
    'Kamera, mikrofon og forbindelse virker. Når det er tid til din videokonsultation, skal du åbne linket fra din besked.',
  'rehearsal.done.next':
    'Ikke alt virkede. Du kan prøve igen. Ring til klinikken, hvis du ikke kan få det til at virke.',
  'rehearsal.again': 'Prøv igen',
  'rehearsal.privacy': 'Prøven sker på din egen enhed. Billede og lyd bliver ikke sendt eller gemt.',

  // On the join page before the link opens.
  'join.early.rehearse': 'Prøv dit kamera og din mikrofon nu',
};

export const EN_REHEARSAL = {
  'rehearsal.title': 'Try camera and microphone',
  'rehearsal.intro.title': 'Try your camera and microphone',
  'rehearsal.intro.text':
    'Here you can check that your camera, your microphone and your connection work. It is a good idea to do it a few days before your video consultation.',
  'rehearsal.intro.private': 'This is only a test. No one can see or hear you, and nothing is saved.',
  'rehearsal.start': 'Start the test',

  'rehearsal.check.title': 'Camera, sound and connection test',
  'rehearsal.server.wait': 'Checking the connection to Konsult …',
  'rehearsal.server.ok': 'The connection to Konsult works.',
  'rehearsal.server.bad': 'We cannot connect to Konsult.',
  'rehearsal.webrtc.wait': 'Checking that your browser can hold video calls …',
  'rehearsal.webrtc.ok': 'Your browser can hold video calls.',
  'rehearsal.webrtc.bad': 'Your browser cannot hold video calls right now.',
  'rehearsal.webrtc.badHelp':
    'Close the browser and open this page again. If that does not help, use a recent version of Chrome, Edge, Firefox or Safari.',

  'rehearsal.summary.checking': 'We check that everything works. It takes half a minute.',
  'rehearsal.summary.mic': 'Say something, so that we can hear whether the microphone works.',
  'rehearsal.summary.ok': 'Everything works. You are ready for your video consultation.',
  'rehearsal.summary.problems': 'This does not work yet: {what}. See below what you can do.',
  'rehearsal.summary.call': 'Call the clinic if you cannot make it work.',
  'rehearsal.part.camera': 'the camera',
  'rehearsal.part.mic': 'the microphone',
  'rehearsal.part.net': 'the connection',

  'rehearsal.finish': 'End the test',
  'rehearsal.done.okTitle': 'You are ready',
  'rehearsal.done.title': 'The test is over',
  'rehearsal.done.off': 'The camera and microphone are off now.',
  'rehearsal.done.okNext':
    'Camera, microphone and connection work. When it is time for your video consultation, open the link from your message.',
  'rehearsal.done.next': 'Not everything worked. You can try again. Call the clinic if you cannot make it work.',
  'rehearsal.again': 'Try again',
  'rehearsal.privacy': 'The test happens on your own device. Picture and sound are not sent or saved.',

  'join.early.rehearse': 'Try your camera and microphone now',
};
